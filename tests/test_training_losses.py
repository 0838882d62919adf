"""The objectives and GradCache: MNTP's shifted labels, the SimCSE loss's analytic value, exact gradients."""

import numpy as np
import pytest
import torch
from conftest import TRAINING_TEXT, save_tiny_causal_lm

from llm2vec_search import L2VError
from llm2vec_search.training import SimCSESettings, SimCSEStage, StartingPoint
from llm2vec_search.training.contrastive import (
    activation_bytes_per_token,
    contrastive_backward,
    fitting_mini_batch,
)
from llm2vec_search.training.data import IGNORE_INDEX
from llm2vec_search.training.losses import info_nce, mntp_loss, mntp_prediction_positions

SENTENCES = sorted(set(TRAINING_TEXT))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-causal"))


def test_masked_token_is_predicted_from_the_previous_position():
    labels = torch.full((2, 8), IGNORE_INDEX)
    labels[0, 3], labels[1, 5], labels[1, 1] = 11, 12, 13
    rows, sources, targets = mntp_prediction_positions(labels)
    assert rows.tolist() == [0, 1, 1]
    assert sources.tolist() == [2, 0, 4]
    assert targets.tolist() == [11, 13, 12]


def test_mntp_loss_reads_the_output_one_position_to_the_left():
    vocab, length = 16, 6
    ids = torch.tensor([[2, 7, 9, 5, 8, 3]])
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, [2, 4]] = ids[0, [2, 4]]
    head = torch.nn.Linear(vocab, vocab, bias=False)
    torch.nn.init.eye_(head.weight)
    # Each position's state is a confident one-hot of the NEXT token, as a trained MNTP model's would be.
    hidden = torch.zeros(1, length, vocab)
    hidden[0, torch.arange(length - 1), ids[0, 1:]] = 50.0
    assert mntp_loss(hidden, labels, head).item() < 1e-6
    # States that encode their own token (the unshifted reading) give a large loss.
    own = torch.zeros(1, length, vocab)
    own[0, torch.arange(length), ids[0]] = 50.0
    assert mntp_loss(own, labels, head).item() > 10


def test_info_nce_with_hard_negatives_matches_its_definition():
    generator = torch.Generator().manual_seed(0)
    queries, candidates = torch.randn(3, 8, generator=generator), torch.randn(5, 8, generator=generator)
    cos = torch.nn.functional.cosine_similarity(queries[:, None], candidates[None], dim=-1).numpy()
    expected = np.mean([-np.log(np.exp(cos[i, i] / 0.1) / np.exp(cos[i] / 0.1).sum()) for i in range(3)])
    assert info_nce(queries, candidates, 0.1).item() == pytest.approx(expected, rel=1e-5)


def simcse_stage(base_dir, **overrides) -> SimCSEStage:
    options = dict(batch_size=8, max_length=32, device="cpu", dropout=0.0, lora_dropout=0.0)
    settings = SimCSESettings(**{**options, **overrides})
    stage = SimCSEStage(StartingPoint.from_spec(str(base_dir)), SENTENCES, settings)
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking adapter: LoRA's B starts at zero, which hides A's gradients
        for name, parameter in stage.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    stage.model.train()
    return stage


def test_simcse_loss_of_identical_views_has_its_analytic_value(base_dir):
    stage = simcse_stage(base_dir)
    batch = SENTENCES[:6]
    loss = stage.backward(batch, lambda value: value)
    vectors = stage.encoder.encode(batch)  # without dropout both views are these vectors
    tau = stage.settings.temperature
    cos = vectors @ vectors.T
    expected = np.mean([-np.log(np.exp(1 / tau) / np.exp(cos[i] / tau).sum()) for i in range(len(batch))])
    assert loss == pytest.approx(expected, rel=1e-4)


def gradients(stage: SimCSEStage, batch: list[str], mini_batch: int | None) -> dict[str, torch.Tensor]:
    stage.model.zero_grad()
    stage.settings.mini_batch = mini_batch
    stage.backward(batch, lambda value: value)
    return {n: p.grad.clone() for n, p in stage.model.named_parameters() if p.requires_grad}


def test_grad_cache_gives_the_full_batch_gradients(base_dir):
    stage = simcse_stage(base_dir)
    batch = SENTENCES[:7]
    full = gradients(stage, batch, None)
    cached = gradients(stage, batch, 3)  # 14 views in chunks of 3, 3, 3, 3, 2
    assert full.keys() == cached.keys()
    assert all(g.abs().max() > 0 for g in full.values())
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=0, atol=1e-5, msg=name)


def test_grad_cache_rerun_draws_the_same_dropout(base_dir):
    stage = simcse_stage(base_dir, dropout=0.3, lora_dropout=0.05)
    items = stage.encoder.tokenize(SENTENCES[:4])
    items = items + items
    first_pass, rerun = [], []

    def embed(chunk):
        vectors = stage.encoder.forward(chunk)
        (rerun if torch.is_grad_enabled() else first_pass).append(vectors.detach().clone())
        return vectors

    count = len(items) // 2
    contrastive_backward(embed, items, lambda v: info_nce(v[:count], v[count:], 0.05), lambda v: v, 3)
    assert len(first_pass) == len(rerun) == 3
    for cached, again in zip(first_pass, rerun, strict=True):
        torch.testing.assert_close(again, cached, rtol=0, atol=1e-6)
    # and dropout is really on: the two views of a sentence differ
    views = torch.cat(first_pass)
    assert (views[:count] - views[count:]).abs().max() > 1e-3


def test_top_layers_only_training_keeps_no_graph_below_them(base_dir):
    stage = simcse_stage(base_dir, lora_layers=1)
    bottom = next(m for name, m in stage.model.named_modules() if name.endswith("layers.0"))
    outputs_need_grad = []

    def record(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        outputs_need_grad.append(hidden.requires_grad)

    bottom.register_forward_hook(record)
    stage.backward(SENTENCES[:4], lambda value: value)
    assert outputs_need_grad and not any(
        outputs_need_grad
    )  # nothing stored for the backward pass below the trained layer
    grads = [p.grad for p in stage.model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.abs().max() > 0 for g in grads)


def test_lora_layers_beyond_the_model_are_refused(base_dir):
    with pytest.raises(L2VError, match=r"lora-layers must be in \[1, 2\]"):
        simcse_stage(base_dir, lora_layers=3)


def test_grad_cache_chunks_are_sized_to_the_memory_available():
    config = type("Config", (), {"num_hidden_layers": 18, "hidden_size": 640, "intermediate_size": 2048})
    per_text = activation_bytes_per_token(config) * 128  # the default model at 128 tokens: ~270 MB a text
    settings = SimCSESettings(max_length=128, batch_size=64)
    assert fitting_mini_batch(config, settings, 128, available=1000 * per_text) is None  # all fit
    assert fitting_mini_batch(config, settings, 128, available=100 * per_text) == 60  # 60% headroom
    asked = SimCSESettings(max_length=128, mini_batch=8)
    assert fitting_mini_batch(config, asked, 128, available=per_text) == 8  # an explicit size is kept
    with pytest.raises(L2VError, match="lower --max-length"):
        fitting_mini_batch(config, settings, 128, available=per_text)
    top_third = SimCSESettings(max_length=128, batch_size=64, lora_layers=6)  # 6 of 18 layers keep a graph
    assert fitting_mini_batch(config, top_third, 200, available=100 * per_text) == 180
