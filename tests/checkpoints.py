"""Local Qwen3-ASR / ForcedAligner checkpoints of the real transformers architecture, built offline.

Nothing is downloaded: each folder gets a config, random (or scripted) weights via `save_pretrained`, a byte-level
tokenizer with every special token the processor reads, the feature extractor and the chat template, so the app
loads it through exactly the code path it uses for the hub ids.

- `build_random`: random weights, tiny or with the real 0.6B/1.7B/aligner sizes (for benchmarks).
- `build_scripted_asr`: greedy decoding yields a known sentence (a bigram chain through zeroed attention and MLPs),
  so tests check the whole path without mocking the model.
- `build_scripted_aligner`: word times rise through the clip, so karaoke highlighting and seeking have real timings.
"""

from __future__ import annotations

import os

import torch
from tokenizers import AddedToken
from transformers import (
    GenerationConfig,
    Qwen2Tokenizer,
    Qwen3ASRConfig,
    Qwen3ASRFeatureExtractor,
    Qwen3ASRForConditionalGeneration,
    Qwen3ASRForTokenClassification,
    Qwen3ASRProcessor,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

SCRIPTED_SENTENCE = "Hello world, this is a test of the scripted model."

# The chat templates transformers' convert_qwen3_asr_to_hf.py writes into the -hf checkpoints.
ASR_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system_text='') -%}"
    "{%- for m in messages -%}{%- if m.role == 'system' -%}"
    "{%- if m.content is string -%}{%- set ns.system_text = ns.system_text + m.content -%}"
    "{%- else -%}{%- for c in m.content -%}{%- if c.type == 'text' and (c.text is defined) -%}"
    "{%- set ns.system_text = ns.system_text + c.text -%}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- set ns2 = namespace(audio_tokens='') -%}"
    "{%- for m in messages -%}{%- if m.content is not string -%}{%- for c in m.content -%}"
    "{%- if c.type == 'audio' or ('audio' in c) or ('audio_url' in c) -%}"
    "{%- set ns2.audio_tokens = ns2.audio_tokens + '<|audio_start|><|audio_pad|><|audio_end|>' -%}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{{- '<|im_start|>system\\n' + ns.system_text + '<|im_end|>\\n' -}}"
    "{{- '<|im_start|>user\\n' + ns2.audio_tokens + '<|im_end|>\\n' -}}"
    "{%- for m in messages -%}{%- if m.role == 'assistant' -%}"
    "{%- set ns3 = namespace(assistant_text='') -%}"
    "{%- if m.content is string -%}{%- set ns3.assistant_text = m.content -%}"
    "{%- else -%}{%- for c in m.content -%}{%- if c.type == 'text' and (c.text is defined) -%}"
    "{%- set ns3.assistant_text = ns3.assistant_text + c.text -%}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' -}}{% generation %}{{- ns3.assistant_text + '<|im_end|>\\n' -}}{% endgeneration %}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
ALIGNER_CHAT_TEMPLATE = (
    "{%- set ns = namespace(audio_tokens='', words=[]) -%}"
    "{%- for m in messages -%}{%- if m.content is not string -%}{%- for c in m.content -%}"
    "{%- if c.type == 'audio' or ('audio' in c) or ('audio_url' in c) -%}"
    "{%- set ns.audio_tokens = ns.audio_tokens + '<|audio_start|><|audio_pad|><|audio_end|>' -%}"
    "{%- endif -%}"
    "{%- if c.type == 'text' and (c.text is defined) -%}{%- set ns.words = ns.words + [c.text] -%}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{{- ns.audio_tokens + ns.words | join('<timestamp><timestamp>') + '<timestamp><timestamp>' -}}"
)

# Added tokens after the 256 byte tokens. special=False ones survive skip_special_tokens (the parser needs
# "<asr_text>" in the decoded string), as in the real tokenizer.
ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|audio_start|>", True), ("<|audio_end|>", True), ("<|audio_pad|>", True),
    ("<asr_text>", False), ("<timestamp>", False),
]

TINY_AUDIO = dict(num_mel_bins=128, encoder_layers=2, d_model=32, encoder_attention_heads=4, encoder_ffn_dim=64,
                  downsample_hidden_size=8, output_dim=32, n_window=50, n_window_infer=800, max_position_embeddings=13)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, max_position_embeddings=65536, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000})
SCRIPTED_TEXT = dict(TINY_TEXT, hidden_size=64, intermediate_size=64, head_dim=16, tie_word_embeddings=False)

_REAL_AUDIO = dict(num_mel_bins=128, n_window=50, n_window_infer=800, downsample_hidden_size=480,
                   max_position_embeddings=13)
_REAL_TEXT = dict(num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  max_position_embeddings=65536, rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000})
REAL_SIZES = {
    "0.6b": (dict(encoder_layers=18, d_model=896, encoder_attention_heads=14, encoder_ffn_dim=3584, output_dim=1024),
             dict(hidden_size=1024, intermediate_size=3072, vocab_size=151936, tie_word_embeddings=True)),
    "1.7b": (dict(encoder_layers=24, d_model=1024, encoder_attention_heads=16, encoder_ffn_dim=4096, output_dim=2048),
             dict(hidden_size=2048, intermediate_size=6144, vocab_size=151936, tie_word_embeddings=True)),
    "aligner": (dict(encoder_layers=24, d_model=1024, encoder_attention_heads=16, encoder_ffn_dim=4096,
                     output_dim=1024),
                dict(hidden_size=1024, intermediate_size=3072, vocab_size=152064, tie_word_embeddings=False)),
}


def build_tokenizer(extra_words: list[str] = ()) -> Qwen2Tokenizer:
    """Byte-level BPE with no merges (every byte is a token) plus the Qwen3-ASR added tokens and `extra_words`."""
    tok = Qwen2Tokenizer(
        vocab={ch: i for i, ch in enumerate(bytes_to_unicode().values())},
        merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>",
                              "audio_eos_token": "<|audio_end|>"},
        model_max_length=131072,
    )
    tok.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    tok.add_tokens([AddedToken(w, special=False, normalized=False) for w in extra_words])
    return tok


def _config(tok: Qwen2Tokenizer, audio: dict, text: dict, num_labels: int | None = None) -> Qwen3ASRConfig:
    ids = {t: tok.convert_tokens_to_ids(t) for t, _ in ADDED_TOKENS}
    text = dict(text, vocab_size=max(text.get("vocab_size", 0), len(tok)))
    extra = {"num_labels": num_labels} if num_labels else {}
    return Qwen3ASRConfig(
        audio_config={"model_type": "qwen3_asr_encoder", **audio},
        text_config={"model_type": "qwen3", **text},
        audio_token_id=ids["<|audio_pad|>"], timestamp_token_id=ids["<timestamp>"],
        pad_token_id=ids["<|im_end|>"], eos_token_id=[ids["<|endoftext|>"], ids["<|im_end|>"]],
        tie_word_embeddings=text.get("tie_word_embeddings", True), **extra,
    )


def _save(model, tok: Qwen2Tokenizer, out_dir: str, template: str, dtype: torch.dtype = torch.bfloat16) -> str:
    os.makedirs(out_dir, exist_ok=True)
    if isinstance(model, Qwen3ASRForConditionalGeneration):
        model.generation_config = GenerationConfig(
            eos_token_id=list(model.config.eos_token_id), pad_token_id=model.config.pad_token_id,
            do_sample=False, max_new_tokens=512,
        )
    model.to(dtype).save_pretrained(out_dir)
    Qwen3ASRProcessor(feature_extractor=Qwen3ASRFeatureExtractor(), tokenizer=tok,
                      chat_template=template).save_pretrained(out_dir)
    return out_dir


def build_random(out_dir: str, kind: str = "asr", size: str = "tiny", seed: int = 0) -> str:
    """Random weights; `kind` "asr" or "aligner", `size` "tiny" or a REAL_SIZES key."""
    tok = build_tokenizer()
    if size == "tiny":
        audio, text = dict(TINY_AUDIO), dict(TINY_TEXT, tie_word_embeddings=(kind == "asr"))
    else:
        audio, text = {**_REAL_AUDIO, **REAL_SIZES[size][0]}, {**_REAL_TEXT, **REAL_SIZES[size][1]}
    torch.manual_seed(seed)
    if kind == "asr":
        return _save(Qwen3ASRForConditionalGeneration(_config(tok, audio, text)), tok, out_dir, ASR_CHAT_TEMPLATE)
    model = Qwen3ASRForTokenClassification(_config(tok, audio, text, num_labels=5000))
    return _save(model, tok, out_dir, ALIGNER_CHAT_TEMPLATE)


def build_scripted_asr(out_dir: str, sentence: str = SCRIPTED_SENTENCE, language: str = "English") -> str:
    """ASR whose greedy output is `language <language><asr_text><sentence>` (or just the sentence when forced).

    Attention and MLP outputs are zeroed, so each position's logits depend on its own token only: embeddings and
    lm_head are wired as a chain "\\n" → "language" → " <language>" → "<asr_text>" → word1 → … → <|im_end|>.
    """
    words = sentence.split()
    pieces = [words[0]] + [" " + w for w in words[1:]]
    tok = build_tokenizer(["language", " " + language] + pieces)
    model = Qwen3ASRForConditionalGeneration(_config(tok, dict(TINY_AUDIO, output_dim=64), SCRIPTED_TEXT))
    ids = tok.convert_tokens_to_ids
    chain = [ids("Ċ"), ids("language"), ids(" " + language), ids("<asr_text>")] + [ids(p) for p in pieces]
    chain.append(ids("<|im_end|>"))
    if len(set(chain[:-1])) != len(chain) - 1:
        raise ValueError("the scripted sentence needs unique words")
    lm = model.model.language_model
    with torch.no_grad():
        for layer in lm.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = lm.embed_tokens.weight, model.lm_head.weight
        emb.mul_(0.01)
        head.zero_()
        for k, (src, dst) in enumerate(zip(chain, chain[1:])):
            emb[src].zero_()
            emb[src, k] = 1.0
            head[dst, k] = 10.0
    return _save(model, tok, out_dir, ASR_CHAT_TEMPLATE)


def build_scripted_aligner(out_dir: str, delta: float = 0.004) -> str:
    """Aligner whose timestamps rise word by word through the clip.

    Layer 0 attends uniformly over the causal prefix (q = 0), so each position sees the fraction f of
    <timestamp> tokens so far; the score head picks the class k whose k * delta is nearest f. Everything else is
    zeroed. For 8-10 words over a few seconds this spreads the words over roughly the first 3 seconds.
    """
    tok = build_tokenizer()
    model = Qwen3ASRForTokenClassification(
        _config(tok, dict(TINY_AUDIO, output_dim=64), SCRIPTED_TEXT, num_labels=5000))
    ts = tok.convert_tokens_to_ids("<timestamp>")
    lm = model.model.language_model
    other = torch.zeros(64)
    other[0], other[2] = 1.0, 1.0
    with torch.no_grad():
        for layer in lm.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        attn = lm.layers[0].self_attn
        attn.q_proj.weight.zero_()
        attn.v_proj.weight.zero_()
        attn.v_proj.weight[0, 0] = attn.v_proj.weight[1, 1] = 1.0
        attn.o_proj.weight[10, 0] = attn.o_proj.weight[11, 1] = 1.0
        lm.embed_tokens.weight.copy_(other.expand_as(lm.embed_tokens.weight))
        lm.embed_tokens.weight[ts].zero_()
        lm.embed_tokens.weight[ts, 0] = lm.embed_tokens.weight[ts, 1] = 1.0
        projector = model.model.multi_modal_projector.linear_2
        projector.weight.zero_()
        projector.bias.copy_(other)
        classes = torch.arange(5000, dtype=torch.float32) * delta
        model.score.weight.zero_()
        model.score.weight[:, 10] = -classes * classes
        model.score.weight[:, 11] = 2 * classes
        if model.score.bias is not None:
            model.score.bias.zero_()
    return _save(model, tok, out_dir, ALIGNER_CHAT_TEMPLATE)


def build_model_dir(root: str) -> str:
    """A `QASR_MODEL_DIR` holding the three hub names: scripted 0.6B and aligner, tiny random 1.7B."""
    build_scripted_asr(os.path.join(root, "Qwen3-ASR-0.6B-hf"))
    build_random(os.path.join(root, "Qwen3-ASR-1.7B-hf"), "asr")
    build_scripted_aligner(os.path.join(root, "Qwen3-ForcedAligner-0.6B-hf"))
    return root


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build a QASR_MODEL_DIR of test checkpoints, or real-size ones.")
    parser.add_argument("out")
    parser.add_argument("--real-size", choices=sorted(REAL_SIZES))
    args = parser.parse_args()
    if args.real_size:
        build_random(args.out, "aligner" if args.real_size == "aligner" else "asr", args.real_size)
    else:
        build_model_dir(args.out)
    print(args.out)
