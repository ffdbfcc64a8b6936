"""Local Qwen3-ASR / ForcedAligner checkpoints of the real transformers architecture, built offline.

Nothing is downloaded: each folder gets a config, random (or scripted) weights via `save_pretrained`, a byte-level
tokenizer with every special token the processor reads, the feature extractor and the chat template, so the app
loads it through exactly the code path it uses for the hub ids.

- `build_random`: random weights, tiny or with the real 0.6B/1.7B/aligner sizes (for benchmarks).
- `build_scripted_asr`: greedy decoding yields a known sentence (a bigram chain through zeroed attention and MLPs),
  so tests check the whole path without mocking the model.
- `build_scripted_aligner`: word times rise through the clip, so karaoke highlighting and seeking have real timings.
- `build_tone_asr`: the transcript is one word naming the tone band that fills most of the clip (`tone_clip`), so
  tests can tell whose audio a result came from, and whether a piece of audio was transcribed twice or not at all.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
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
#: vLLM's CPU attention takes head sizes from 32 to 512, so every test checkpoint has heads of 32: both engines can
#: serve the same weights.
VLLM_HEAD_DIM = 32
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=VLLM_HEAD_DIM, max_position_embeddings=65536, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000})
SCRIPTED_TEXT = dict(TINY_TEXT, hidden_size=64, intermediate_size=64, tie_word_embeddings=False)

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


def build_random(out_dir: str, kind: str = "asr", size: str = "tiny", seed: int = 0,
                 initializer_range: float | None = None) -> str:
    """Random weights; `kind` "asr" or "aligner", `size` "tiny" or a REAL_SIZES key. The default initialisation
    (std 0.02) leaves a tiny model's logits nearly blind to the audio (two different tones: 3e-6 apart); an
    `initializer_range` of 0.5 makes every feature frame show in them."""
    tok = build_tokenizer()
    if size == "tiny":
        audio, text = dict(TINY_AUDIO), dict(TINY_TEXT, tie_word_embeddings=(kind == "asr"))
    else:
        audio, text = {**_REAL_AUDIO, **REAL_SIZES[size][0]}, {**_REAL_TEXT, **REAL_SIZES[size][1]}
    if initializer_range is not None:
        audio, text = dict(audio, initializer_range=initializer_range), dict(text, initializer_range=initializer_range)
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


#: Fundamentals of the tone bands `build_tone_asr` tells apart, about a factor 1.5 apart, so that (with the 2nd and
#: 3rd harmonics of `tone_clip`) each band lights a different set of the encoder's 16 frequency groups.
TONE_FREQS: tuple[float, ...] = (150.0, 220.0, 330.0, 490.0, 730.0, 1090.0, 1610.0, 2400.0)
#: The word `build_tone_asr` says for each band.
TONE_WORDS: tuple[str, ...] = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")

#: The tone model's text hidden layout: dims 0-4 carry the token chain, 32-63 the audio embeddings (and nothing else),
#: 64-95 the prompt's average of those, written by layer 0's attention and read by the word rows of lm_head.
_TONE_TEXT = dict(SCRIPTED_TEXT, hidden_size=96)
_AUDIO_DIMS = slice(32, 64)
_CLASSIFIER_DIMS = slice(64, 96)
#: Logits before the final RMSNorm's scale. A chain step gives its next token _CHAIN_LOGIT. A class (band or silence)
#: scores its share of the clip's frames times the share d of prompt positions that are audio (so at most about 1),
#: weighted by _CLASSIFIER_WEIGHT, which must stay below _CHAIN_LOGIT so that no chain step is outweighed. After
#: `<asr_text>` the words and <|im_end|> also get _BASE_LOGIT, so one of them follows whatever the scores; it is kept
#: small because on a GPU the logits are bfloat16, whose resolution coarsens as they grow.
_CHAIN_LOGIT = 30.0
_CLASSIFIER_WEIGHT = 20.0
_BASE_LOGIT = 5.0
#: The encoder's scale for its spectral profile, against the sinusoidal position embedding (amplitude 1) it adds.
_PROFILE_SCALE = 100.0


def tone_word(band: int) -> str:
    """The word the tone model says for `tone_clip(band, ...)`."""
    return TONE_WORDS[band]


def tone_clip(band: int, seconds: float, sr: int = 16000) -> np.ndarray:
    """The test signal of one band, float32 at `sr`: the fundamental TONE_FREQS[band] with harmonics 2 and 3 and a
    syllable-rate (4 Hz) amplitude envelope, peaking near 0.4, like `tests.media.tone`, so it is never silent and
    survives lossy codecs."""
    t = np.arange(int(round(seconds * sr)), dtype=np.float64) / sr
    voice = sum(np.sin(2 * np.pi * TONE_FREQS[band] * k * t) / k for k in (1, 2, 3))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    return (0.4 * envelope * voice / 1.84).astype(np.float32)


def build_tone_asr(out_dir: str, language: str = "English") -> str:
    """ASR whose greedy output is `language <language><asr_text><word>`, or just the word when the language is forced,
    where the word is `tone_word(b)` for the band b of `tone_clip` that fills most of the clip's frames; a clip that
    is mostly silence gives no word (an empty transcript).

    Wiring, all in the real architecture:
    - audio encoder: its transformer layers pass through (out_proj and fc2 zeroed), and its three convolutions average
      channel 0 of the log-mel image, so each frame (~80 ms) comes out as its log spectrum in 16 frequency groups,
      scaled to drown the position embedding; ln_post removes the loudness offset of the log spectrum.
    - projector: copies that profile into the audio dims only; token embeddings are zero there.
    - text layer 0: q = 0 makes attention a uniform average over the causal prefix; v reads the audio dims and o_proj
      writes the average into the classifier dims. Text positions add zeros, so the average is the clip's mean frame
      scaled by the share d of audio frames in the prompt (which context text and clip length change).
    - lm_head: calibrated on `tone_clip`s and silence through these very modules, each word's row over the classifier
      dims is the pseudo-inverse row w_b with w_b . c_j = 1 for its band's mean frame c_j and 0 for every other
      band's and for silence's (<|im_end|> takes the silence row), so a clip scores each band by about its share of
      frames, times d, which changes no ranking; bands and silence get the same small base logit after `<asr_text>`.
    - everything else is the bigram chain of `build_scripted_asr`: "\\n" -> "language" -> " <language>" ->
      "<asr_text>" -> word -> <|im_end|>.
    """
    tok = build_tokenizer(["language", " " + language, *TONE_WORDS])
    torch.manual_seed(0)
    text = _TONE_TEXT
    model = Qwen3ASRForConditionalGeneration(
        _config(tok, dict(TINY_AUDIO, output_dim=text["hidden_size"]), text)).eval()
    processor = Qwen3ASRProcessor(feature_extractor=Qwen3ASRFeatureExtractor(), tokenizer=tok,
                                  chat_template=ASR_CHAT_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    words, end = [ids(w) for w in TONE_WORDS], ids("<|im_end|>")
    chain = [ids("Ċ"), ids("language"), ids(" " + language), ids("<asr_text>")]
    with torch.no_grad():
        _spectral_encoder(model.model.audio_tower)
        _audio_projector(model.model.multi_modal_projector)
        _prefix_average(model.model.language_model)
        emb, head = model.model.language_model.embed_tokens.weight, model.lm_head.weight
        emb.mul_(0.01)
        emb[:, _AUDIO_DIMS] = 0.0
        emb[:, _CLASSIFIER_DIMS] = 0.0
        head.zero_()
        for k, src in enumerate(chain):
            emb[src, :_AUDIO_DIMS.start] = 0.0
            emb[src, k] = 1.0
        for k, dst in enumerate(chain[1:]):
            head[dst, k] = _CHAIN_LOGIT
        step = len(chain)  # one dim, shared by the words, leads to <|im_end|>
        for word in words:
            emb[word, :_AUDIO_DIMS.start] = 0.0
            emb[word, step] = 1.0
        head[end, step] = _CHAIN_LOGIT
        after_marker = len(chain) - 1
        head[words + [end], after_marker] = _BASE_LOGIT
        model.to(torch.bfloat16).to(torch.float32)  # calibrate the weights as they will be saved
        classifier = _band_classifier(model, processor)
        head[words + [end], _CLASSIFIER_DIMS] = _CLASSIFIER_WEIGHT * classifier
    return _save(model, tok, out_dir, ASR_CHAT_TEMPLATE)


def _spectral_encoder(encoder: torch.nn.Module) -> None:
    """Make each encoder frame the log-mel spectrum of its ~80 ms in 16 frequency groups (see `build_tone_asr`)."""
    for layer in encoder.layers:
        for linear in (layer.self_attn.out_proj, layer.fc2):
            linear.weight.zero_()
            linear.bias.zero_()
    for conv in (encoder.conv2d1, encoder.conv2d2, encoder.conv2d3):
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = 1.0 / 9.0
    encoder.conv2d1.bias[0] = 3.0  # log-mel values are >= -1.5: keeps GELU in its nearly linear range
    groups = encoder.conv_out.in_features // encoder.conv2d3.out_channels  # frequency groups of channel 0
    encoder.conv_out.weight.zero_()
    encoder.conv_out.weight[:groups, :groups] = _PROFILE_SCALE * torch.eye(groups)


def _audio_projector(projector: torch.nn.Module) -> None:
    """Copy the encoder's (layer-normed) frames into the audio dims, through GELU's nearly linear range."""
    width = projector.linear_1.in_features
    projector.linear_1.weight.copy_(torch.eye(width))
    projector.linear_1.bias.fill_(4.0)
    projector.linear_2.weight.zero_()
    projector.linear_2.bias.zero_()
    projector.linear_2.weight[_AUDIO_DIMS] = torch.eye(width)
    projector.linear_2.bias[_AUDIO_DIMS] = -4.0


def _prefix_average(language_model: torch.nn.Module) -> None:
    """Zero every attention and MLP output except layer 0's attention, which writes the causal-prefix average of the
    audio dims into the classifier dims (see `build_tone_asr`)."""
    for layer in language_model.layers:
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    attn = language_model.layers[0].self_attn
    head_dim, audio = attn.head_dim, _AUDIO_DIMS.stop - _AUDIO_DIMS.start
    groups = attn.num_key_value_groups  # query heads per value head
    attn.q_proj.weight.zero_()
    attn.v_proj.weight.zero_()
    attn.v_proj.weight[:audio, _AUDIO_DIMS] = torch.eye(audio)
    for kv_head in range(audio // head_dim):
        value = slice(kv_head * head_dim, (kv_head + 1) * head_dim)
        query_head = kv_head * groups  # the first query head reading this value head
        attn.o_proj.weight[_CLASSIFIER_DIMS.start + value.start:_CLASSIFIER_DIMS.start + value.stop,
                           query_head * head_dim:(query_head + 1) * head_dim] = torch.eye(head_dim)


def _band_classifier(model: Qwen3ASRForConditionalGeneration, processor: Qwen3ASRProcessor) -> torch.Tensor:
    """Rows w_0..w_B-1 (the bands) and w_B (silence) over the classifier dims with w_i . c_j = delta_ij, where c_j is
    the mean frame of class j as layer 0's attention averages it: the pseudo-inverse of the centroid matrix."""
    sr = processor.feature_extractor.sampling_rate
    classes = [[tone_clip(band, seconds, sr) for seconds in (2.0, 5.0)] for band in range(len(TONE_FREQS))]
    classes.append([np.zeros(3 * sr, np.float32)])
    centroids = torch.stack([torch.cat([_attended_frames(model, processor, clip) for clip in clips]).mean(0)
                             for clips in classes], dim=1)
    return torch.linalg.pinv(centroids)


def _attended_frames(model: Qwen3ASRForConditionalGeneration, processor: Qwen3ASRProcessor,
                     clip: np.ndarray) -> torch.Tensor:
    """Per audio frame of `clip`, the vector layer 0's attention averages, as it lands in the classifier dims
    (o_proj and v_proj copy the normed audio dims there); padding features are zeroed as the app does."""
    inputs = processor.apply_transcription_request(audio=[clip])
    mask = inputs["input_features_mask"]
    features = inputs["input_features"] * mask[:, None, :]
    audio = model.model.get_audio_features(features, mask).pooler_output
    return model.model.language_model.layers[0].input_layernorm(audio)[:, _AUDIO_DIMS]


def build_model_dir(root: str) -> str:
    """A `QASR_MODEL_DIR` holding the three hub names: scripted 0.6B and aligner, tiny random 1.7B. The 1.7B's
    logits move with every feature frame (`initializer_range`), so it tells batched from alone, and it decodes
    random tokens to the end of its budget: the slow model, for progress and Cancel."""
    build_scripted_asr(os.path.join(root, "Qwen3-ASR-0.6B-hf"))
    build_random(os.path.join(root, "Qwen3-ASR-1.7B-hf"), "asr", initializer_range=0.5)
    build_scripted_aligner(os.path.join(root, "Qwen3-ForcedAligner-0.6B-hf"))
    return root


def build_tone_model_dir(root: str) -> str:
    """Like `build_model_dir`, but its 0.6B is the tone model (`build_tone_asr`)."""
    build_tone_asr(os.path.join(root, "Qwen3-ASR-0.6B-hf"))
    build_random(os.path.join(root, "Qwen3-ASR-1.7B-hf"), "asr")
    build_scripted_aligner(os.path.join(root, "Qwen3-ForcedAligner-0.6B-hf"))
    return root


ASR_FOLDERS = ("Qwen3-ASR-0.6B-hf", "Qwen3-ASR-1.7B-hf")


def vllm_layout(model_dir: str, out_dir: str) -> str:
    """A copy of the `QASR_MODEL_DIR` `model_dir` in the layout vLLM loads, the same weights: vLLM's weight renaming
    misses an untied top-level `lm_head.weight`, so that key becomes `thinker.lm_head.weight` there."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
    for name in ASR_FOLDERS:
        path = os.path.join(out_dir, name, "model.safetensors")
        weights = load_file(path)
        if "lm_head.weight" in weights:
            weights["thinker.lm_head.weight"] = weights.pop("lm_head.weight")
            save_file(weights, path, metadata={"format": "pt"})
    return out_dir


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build a QASR_MODEL_DIR of test checkpoints, or real-size ones.")
    parser.add_argument("out")
    parser.add_argument("--real-size", choices=sorted(REAL_SIZES))
    parser.add_argument("--tone", action="store_true", help="with the tone model as the 0.6B (build_tone_model_dir)")
    args = parser.parse_args()
    if args.real_size:
        build_random(args.out, "aligner" if args.real_size == "aligner" else "asr", args.real_size)
    elif args.tone:
        build_tone_model_dir(args.out)
    else:
        build_model_dir(args.out)
    print(args.out)
