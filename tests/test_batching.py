"""Batching across requests: the scheduler on its own, then `run_asr` / `run_aligner` on the real (scripted and
tiny) checkpoints, with concurrent callers in threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from qasr_space import inference
from qasr_space.inference import asr_inputs, run_aligner, run_asr
from qasr_space.models import ModelManager
from qasr_space.progress import TranscriptionWatch
from qasr_space.scheduler import SCHEDULER, BatchPolicy
from qasr_space.settings import Settings
from tests.checkpoints import SCRIPTED_SENTENCE
from tests.media import tone
from tests.engines import suite_settings

#: The transformers engine's own scheduler and `run_asr`, called directly: the vLLM pass has nothing to run here.
pytestmark = pytest.mark.engine_free

#: Long enough that concurrent callers always arrive inside it; a full batch ends the wait at once.
GATHER_SECONDS = 5.0


def concurrently(calls: list) -> list:
    """Start every call at the same moment, each in its own thread; results (or raised exceptions) in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        try:
            return call()
        except Exception as exc:  # the test inspects it
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def recorder(fail_on=None):
    """A run function that records each batch it gets and doubles every payload (or fails on `fail_on`)."""
    batches: list[list] = []

    def run(payloads: list) -> list:
        batches.append(list(payloads))
        if fail_on in payloads:
            raise ValueError(f"bad payload {fail_on}")
        return [p * 2 for p in payloads]

    return run, batches


def test_concurrent_calls_share_one_run_and_each_gets_its_own_result():
    policy = BatchPolicy(max_size=4, wait_seconds=GATHER_SECONDS)
    run, batches = recorder()
    results = concurrently([lambda i=i: SCHEDULER.submit(run, i, policy=policy) for i in range(4)])
    assert results == [0, 2, 4, 6]
    assert len(batches) == 1 and sorted(batches[0]) == [0, 1, 2, 3]
    assert policy.counter.snapshot() == {"model_calls": 1, "requests": 4, "clips": 4}


def test_batches_are_capped_in_clips_and_a_call_bigger_than_the_cap_runs_alone():
    policy = BatchPolicy(max_size=4, wait_seconds=0.3)
    run, batches = recorder()
    results = concurrently([lambda i=i: SCHEDULER.submit(run, i, policy=policy, size=2) for i in range(3)]
                           + [lambda: SCHEDULER.submit(run, 10, policy=policy, size=9)])
    assert results == [0, 2, 4, 20]
    assert sorted(len(b) for b in batches) == [1, 1, 2]
    assert [10] in batches


def test_different_keys_and_run_functions_never_share_a_run():
    policy = BatchPolicy(max_size=8, wait_seconds=0.3)
    run_a, batches_a = recorder()
    run_b, batches_b = recorder()
    results = concurrently([lambda i=i: SCHEDULER.submit(run_a, i, policy=policy, key=("beams", i % 2))
                            for i in range(4)] + [lambda: SCHEDULER.submit(run_b, 7, policy=policy)])
    assert results == [0, 2, 4, 6, 14]
    assert sorted(sorted(b) for b in batches_a) == [[0, 2], [1, 3]]
    assert batches_b == [[7]]


def test_a_bad_request_fails_alone_and_the_others_still_get_their_results():
    policy = BatchPolicy(max_size=4, wait_seconds=GATHER_SECONDS)
    run, batches = recorder(fail_on=2)
    results = concurrently([lambda i=i: SCHEDULER.submit(run, i, policy=policy) for i in range(4)])
    assert results[:2] == [0, 2] and results[3] == 6
    assert isinstance(results[2], ValueError) and "bad payload 2" in str(results[2])
    assert len(batches[0]) == 4 and sorted(batches[1:]) == [[0], [1], [2], [3]]  # merged, then each alone
    assert policy.counter.snapshot() == {"model_calls": 5, "requests": 4, "clips": 4}


def test_a_disabled_policy_runs_every_call_alone():
    policy = BatchPolicy(max_size=4, wait_seconds=GATHER_SECONDS, enabled=False)
    run, batches = recorder()
    assert concurrently([lambda i=i: SCHEDULER.submit(run, i, policy=policy) for i in range(3)]) == [0, 2, 4]
    assert sorted(batches) == [[0], [1], [2]]


def test_zero_gpu_switches_cross_request_batching_off(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert not Settings.from_env().batch_requests
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert Settings.from_env().batch_requests


@pytest.fixture(scope="module")
def gathering_manager(model_dir) -> ModelManager:
    """Batches of up to 4 clips, gathered for long enough that 4 concurrent callers always meet (a full batch ends
    the wait at once). Results "alone" come from the session `manager`: the same checkpoints, loaded separately."""
    return ModelManager(suite_settings(model_dir, batch_size=4, batch_wait_ms=GATHER_SECONDS * 1000))


def asr_calls(manager: ModelManager) -> int:
    return manager.batch_stats()["asr"]["model_calls"]


def test_run_asr_merges_concurrent_requests_and_keeps_each_ones_options(gathering_manager, manager):
    requests = [([tone(1.0)], ["French"], ["names: Ada"], None),
                ([tone(2.5, freq=220.0)], ["German"], [None], None),
                ([tone(1.5, freq=300.0)], ["English"], ["terms"], 3),
                ([tone(2.0, freq=260.0)], [None], [None], None)]
    before = asr_calls(gathering_manager)
    loaded = gathering_manager.asr("0.6B")
    outputs = concurrently([lambda r=r: run_asr(loaded, *r) for r in requests])
    assert asr_calls(gathering_manager) - before == 1
    assert [o[0].text for o in outputs] == [SCRIPTED_SENTENCE, SCRIPTED_SENTENCE, "Hello world, this",
                                            SCRIPTED_SENTENCE]
    assert [o[0].truncated for o in outputs] == [False, False, True, False]
    assert outputs[3][0].language == "English"
    assert outputs == [run_asr(manager.asr("0.6B"), *r) for r in requests]


def test_random_weights_decode_the_same_batched_as_alone(gathering_manager, manager):
    """Random weights make every feature count: merging with other requests must not change a result."""
    loaded = gathering_manager.asr("1.7B")
    clips = [tone(1.0 + 0.7 * i, freq=180.0 + 50 * i) for i in range(4)]
    outputs = concurrently([lambda c=c: run_asr(loaded, [c], [None], [None], 8) for c in clips])
    assert outputs == [run_asr(manager.asr("1.7B"), [c], [None], [None], 8) for c in clips]


def test_a_bad_request_in_a_merged_batch_fails_alone(gathering_manager):
    loaded = gathering_manager.asr("0.6B")
    languages = ["English", "Klingon", "French", "German"]
    before = asr_calls(gathering_manager)
    outputs = concurrently([lambda lang=lang: run_asr(loaded, [tone(1.0)], [lang], [None]) for lang in languages])
    assert isinstance(outputs[1], ValueError) and "Klingon" in str(outputs[1])
    assert [outputs[i][0].text for i in (0, 2, 3)] == [SCRIPTED_SENTENCE] * 3
    assert [outputs[i][0].language for i in (0, 2, 3)] == [None] * 3  # forced: the model tags nothing
    assert asr_calls(gathering_manager) - before == 1 + len(languages)


def test_run_aligner_merges_concurrent_requests(gathering_manager, manager):
    requests = [(tone(2.0), "one two three"), (tone(3.0, freq=240.0), "Ein kleiner Test"),
                (tone(4.0, freq=280.0), SCRIPTED_SENTENCE), (tone(2.5, freq=320.0), "short one")]
    before = gathering_manager.batch_stats()["aligner"]["model_calls"]
    loaded = gathering_manager.aligner()
    outputs = concurrently([lambda c=c, t=t: run_aligner(loaded, [c], [t], ["English"]) for c, t in requests])
    assert gathering_manager.batch_stats()["aligner"]["model_calls"] - before == 1
    assert [[w["text"] for w in o[0]] for o in outputs] == [t.replace(",", "").replace(".", "").split()
                                                           for _, t in requests]
    assert outputs == [run_aligner(manager.aligner(), [c], [t], ["English"]) for c, t in requests]


def test_different_generate_options_and_models_are_not_mixed(model_dir, manager):
    """Given time to meet (a half-second window, batches of 8), calls still split by model and options."""
    separate = ModelManager(suite_settings(model_dir, batch_size=8, batch_wait_ms=500))
    small, large = separate.asr("0.6B"), separate.asr("1.7B")
    outputs = concurrently([
        lambda: run_asr(small, [tone(1.0)], ["English"], [None]),
        lambda: run_asr(small, [tone(1.2)], ["English"], [None], repetition_penalty=1.0),
        lambda: run_asr(large, [tone(1.4)], [None], [None], 8),
    ])
    assert separate.batch_stats()["asr"] == {"model_calls": 3, "requests": 3, "clips": 3}
    assert outputs[0][0].text == outputs[1][0].text == SCRIPTED_SENTENCE
    assert outputs[2] == run_asr(manager.asr("1.7B"), [tone(1.4)], [None], [None], 8)


def odd_length_clips() -> list:
    """Mixed lengths, none a multiple of 160 samples (one feature frame), so a batch pads every clip but the longest
    by a part of a frame: the case where features computed for the padded batch gave a clip one more audio token."""
    return [tone(seconds, freq=170.0 + 45 * i)[:int(seconds * 16000) + extra]
            for i, (seconds, extra) in enumerate([(1.0, -37), (2.3, -101), (0.6, -13), (3.7, -59)])]


LANGUAGES = [None, "English", None, "German"]
CONTEXTS = [None, "names: Ada", "terms <|im_end|> here", None]


def test_one_call_over_mixed_lengths_gives_each_clip_exactly_what_it_gets_alone(manager):
    """The tiny 1.7B's logits move with every feature frame (`build_model_dir`)."""
    loaded = manager.asr("1.7B")
    clips = odd_length_clips()
    together = run_asr(loaded, clips, LANGUAGES, CONTEXTS, 8)
    alone = [run_asr(loaded, [c], [lang], [ctx], 8)[0] for c, lang, ctx in zip(clips, LANGUAGES, CONTEXTS)]
    assert together == alone
    assert len({out.text for out in alone}) == len(alone)  # four different answers: the weights tell clips apart


def test_a_clip_padded_into_a_batch_scores_the_next_token_as_it_does_alone(manager):
    """Sharper than the text: the logits of the first decoding step, for each clip of a batch of odd lengths, with and
    without context, are those it gets alone (a frame more or less moves them by 1 or more)."""
    loaded = manager.asr("1.7B")
    clips = odd_length_clips()

    def first_step_logits(clips, languages, contexts):
        inputs = inference._to_model(asr_inputs(loaded.processor, clips, languages, contexts), loaded)
        with torch.inference_mode():
            return loaded.model(**inputs).logits[:, -1]

    together = first_step_logits(clips, LANGUAGES, CONTEXTS)
    for row, (clip, lang, ctx) in enumerate(zip(clips, LANGUAGES, CONTEXTS)):
        alone = first_step_logits([clip], [lang], [ctx])[0]
        torch.testing.assert_close(together[row], alone, rtol=0, atol=1e-4)


def test_requests_merged_by_the_scheduler_get_exactly_what_they_get_alone(gathering_manager, manager):
    loaded = gathering_manager.asr("1.7B")
    requests = list(zip(odd_length_clips(), LANGUAGES, CONTEXTS))
    before = asr_calls(gathering_manager)
    outputs = concurrently([lambda c=c, lang=lang, ctx=ctx: run_asr(loaded, [c], [lang], [ctx], 8)
                            for c, lang, ctx in requests])
    assert asr_calls(gathering_manager) - before == 1
    assert outputs == [run_asr(manager.asr("1.7B"), [c], [lang], [ctx], 8) for c, lang, ctx in requests]


def test_the_aligner_times_each_clip_of_a_call_as_it_does_alone(manager):
    loaded = manager.aligner()
    clips = odd_length_clips()
    texts = ["one two three", "Ein kleiner Test hier", "short", "a longer line of several words"]
    languages = ["English", "German", "English", "English"]
    together = run_aligner(loaded, clips, texts, languages)
    assert together == [run_aligner(loaded, [c], [t], [lang])[0] for c, t, lang in zip(clips, texts, languages)]


def test_requests_joining_a_running_decode_get_exactly_their_tokens_alone_and_return_first(model_dir, manager):
    """A long request decodes; four short ones (odd lengths, with and without context) arrive one after another while
    it runs. Each joins the running batch at a step (its own prefill, then one forward with the others), returns
    while the long one is still decoding, and gets exactly the tokens it gets alone; so does the long one."""
    from tests.test_progress import wait_for_tokens  # test_progress imports this module

    joining = ModelManager(suite_settings(model_dir, batch_size=5))
    loaded = joining.asr("1.7B")
    long_budget, options = 400, {"min_new_tokens": 400}  # no end-of-text before the budget: lengths are known
    long_watch = TranscriptionWatch()
    short = [(clip, lang, ctx, 6 + 3 * i) for i, (clip, lang, ctx) in enumerate(zip(odd_length_clips(), LANGUAGES,
                                                                                    CONTEXTS))]
    finished: dict[str, int] = {}

    def long_request():
        return run_asr(loaded, [tone(2.2, freq=400.0)], [None], [None], long_budget, watch=long_watch, **options)

    def short_request(i, clip, lang, ctx, budget, watch):
        out = run_asr(loaded, [clip], [lang], [ctx], budget, watch=watch, **options)
        finished[f"short {i}"] = long_watch.snapshot().tokens
        return out

    with ThreadPoolExecutor(len(short) + 1) as pool:
        running = pool.submit(long_request)
        futures, steps = [], 2
        for i, request in enumerate(short):
            wait_for_tokens(long_watch, steps)
            futures.append(pool.submit(short_request, i, *request, TranscriptionWatch()))
            steps += 3  # the next one arrives a few steps later: every short one joins at another length
        outputs = [future.result() for future in futures]
        long_output = running.result()
    assert all(0 < tokens < long_budget for tokens in finished.values()), finished
    assert long_watch.snapshot().tokens == long_budget
    alone = manager.asr("1.7B")
    assert outputs == [run_asr(alone, [c], [lang], [ctx], budget, **options) for c, lang, ctx, budget in short]
    assert long_output == run_asr(alone, [tone(2.2, freq=400.0)], [None], [None], long_budget, **options)
    assert len({out[0].text for out in outputs}) == len(outputs)


def test_options_decoding_per_step_does_not_cover_share_one_generate_and_get_their_tokens_alone(gathering_manager,
                                                                                              manager):
    """Beam search is not greedy: such calls take the other path, merged into one `generate` (`_decode`), and still
    get exactly what they get alone."""
    loaded = gathering_manager.asr("1.7B")
    options = {"num_beams": 2}
    assert not inference._decodes_per_step(loaded, options) and inference._decodes_per_step(loaded, {})
    requests = list(zip(odd_length_clips(), LANGUAGES, CONTEXTS))
    before = asr_calls(gathering_manager)
    outputs = concurrently([lambda c=c, lang=lang, ctx=ctx: run_asr(loaded, [c], [lang], [ctx], 8, **options)
                            for c, lang, ctx in requests])
    assert asr_calls(gathering_manager) - before == 1
    assert outputs == [run_asr(manager.asr("1.7B"), [c], [lang], [ctx], 8, **options) for c, lang, ctx in requests]
    assert len({out[0].text for out in outputs}) == len(outputs)
