"""Fusion modules and the multimodal network: shapes, gradients, widths, loading."""
import pytest
import torch
import torch.nn.functional as F

from common.facts import AudioFrontend
from common.nets.featurizers import Conv1Net, Conv2Net
from common.nets.fusions import DEFAULT_WIDTHS, FUSIONS, AttentionFusion, build_fusion, mean_pool_steps
from common.nets.models import FUSION_CHOICES, LateFusionNet, MultimodalNet, build_multimodal
from common.training.init_from import load_featurizer_weights
from common.training.loop import autocast

N_IMG = N_AUD = 16          # small vector widths keep the fusion tests fast
IMG_MAP = (64, 7, 7)        # conv map shapes the featurizers produce
AUD_MAP = (64, 500)
SMALL = {"fused_dim": 12, "hidden_dim": 20, "heads": 4}
EQUAL_WIDTH = {"add", "mul", "max", "attention", "gated"}


def make_fusion(name, **widths):
    widths = {**SMALL, **widths}
    cls = FUSIONS[name]
    if cls.uses_tokens:
        return build_fusion(name, IMG_MAP[0], AUD_MAP[0], **widths)
    return build_fusion(name, N_IMG, N_AUD, **widths)


def make_inputs(fusion, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    if fusion.uses_tokens:
        shapes = ((batch, *IMG_MAP), (batch, *AUD_MAP))
    else:
        shapes = ((batch, fusion.n_img), (batch, fusion.n_aud))
    return [torch.randn(*s, generator=g).requires_grad_() for s in shapes]


def zero_rows(module, prefix=""):
    """{parameter name: (start, stop)} of rows that get no gradient by design."""
    out = {}
    for name, sub in module.named_modules():
        for pname, rows in getattr(sub, "zero_grad_rows", {}).items():
            out[".".join(p for p in (prefix, name, pname) if p)] = rows
    return out


def check_gradients(module, loss):
    """Every parameter gets a non-zero gradient, except rows documented as zero."""
    loss.backward()
    dead = zero_rows(module)
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        if name in dead:
            start, stop = dead[name]
            assert torch.count_nonzero(p.grad[start:stop]) == 0, f"{name}[{start}:{stop}] should get zero grad"
            rest = torch.cat([p.grad[:start].flatten(), p.grad[stop:].flatten()])
            assert rest.abs().sum() > 0, f"{name} outside rows {start}:{stop} got a zero gradient"
        else:
            assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def random_loss(out, seed=1):
    # a random projection, so a sum that a LayerNorm makes constant cannot hide gradients
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return (out * w).sum()


@pytest.mark.parametrize("name", list(FUSIONS))
@pytest.mark.parametrize("batch", [4, 1])
def test_output_shape(name, batch):
    fusion = make_fusion(name)
    out = fusion(*make_inputs(fusion, batch))
    assert out.shape == (batch, fusion.out_dim)


@pytest.mark.parametrize("name", list(FUSIONS))
def test_every_parameter_and_input_gets_gradient(name):
    torch.manual_seed(0)
    fusion = make_fusion(name)
    inputs = make_inputs(fusion, 4)
    check_gradients(fusion, random_loss(fusion(*inputs)))
    for x in inputs:
        assert x.grad.abs().sum() > 0


def test_registry_and_choices():
    assert set(FUSIONS) == {"concat", "add", "mul", "max", "attention", "gated",
                            "bilinear", "factorized", "attention-tokens"}
    assert set(FUSION_CHOICES) == set(FUSIONS) | {"late"}
    assert [n for n, c in FUSIONS.items() if c.uses_tokens] == ["attention-tokens"]


def test_unknown_fusion_lists_valid_names():
    with pytest.raises(ValueError, match="unknown fusion 'sum'.*concat.*factorized"):
        build_fusion("sum", 8, 8)
    with pytest.raises(ValueError, match="late"):
        build_multimodal("sum")


def test_unknown_width_option_is_an_error():
    with pytest.raises(TypeError, match="fused_dims"):
        build_fusion("bilinear", 8, 8, fused_dims=4)


def test_out_dims():
    assert make_fusion("concat").out_dim == N_IMG + N_AUD
    assert make_fusion("gated").out_dim == N_IMG + N_AUD
    for name in ("add", "mul", "max", "attention"):
        assert make_fusion(name).out_dim == N_IMG
    for name in ("bilinear", "factorized"):
        assert make_fusion(name).out_dim == SMALL["fused_dim"]
    assert make_fusion("attention-tokens").out_dim == 2 * SMALL["fused_dim"]
    assert make_fusion("attention-tokens", combine="sum").out_dim == SMALL["fused_dim"]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("n_i,n_a,n_f", [(16, 16, 12), (10, 6, 3)])
def test_bilinear_parameter_count(n_i, n_a, n_f):
    assert n_params(build_fusion("bilinear", n_i, n_a, fused_dim=n_f)) == n_f * n_i * n_a + n_f


@pytest.mark.parametrize("n_i,n_a,n_f,h", [(16, 16, 12, 20), (10, 6, 3, 7)])
def test_factorized_parameter_count(n_i, n_a, n_f, h):
    fusion = build_fusion("factorized", n_i, n_a, fused_dim=n_f, hidden_dim=h)
    assert n_params(fusion) == h * (n_i + n_a + n_f) + n_f


def test_default_widths():
    assert DEFAULT_WIDTHS == {"fused_dim": 128, "hidden_dim": 256, "heads": 4}
    assert n_params(build_fusion("bilinear", 128, 128)) == 128 ** 3 + 128


def test_factorized_is_low_rank_bilinear():
    # no projection biases: the output is bilinear in (f_img, f_aud) plus b_f
    fusion = make_fusion("factorized")
    a, b = torch.randn(3, N_IMG), torch.randn(3, N_AUD)
    bias = fusion.proj_out.bias
    torch.testing.assert_close(fusion(2 * a, b) - bias, 2 * (fusion(a, b) - bias))
    torch.testing.assert_close(fusion(a, -b) - bias, -(fusion(a, b) - bias))


@pytest.mark.parametrize("name", sorted(EQUAL_WIDTH))
def test_equal_width_fusions_reject_unequal_widths(name):
    with pytest.raises(ValueError, match=rf"{name}.*n_img=16.*n_aud=8"):
        build_fusion(name, 16, 8, **SMALL)


@pytest.mark.parametrize("name", ["concat", "bilinear", "factorized"])
def test_any_width_fusions_accept_unequal_widths(name):
    fusion = build_fusion(name, 16, 8, **SMALL)
    assert fusion(torch.randn(2, 16), torch.randn(2, 8)).shape == (2, fusion.out_dim)


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="heads=3"):
        build_fusion("attention", 16, 16, heads=3)


def test_attention_is_degenerate():
    torch.manual_seed(0)
    fusion = make_fusion("attention")
    assert isinstance(fusion, AttentionFusion)
    n = N_IMG
    a, b = torch.randn(5, n), torch.randn(5, n)
    with torch.no_grad():
        before = fusion(a, b)
        # by hand: softmax over one key is 1, so MhA(q, kv, kv) = out_proj(W_v kv + b_v)
        w_v, b_v = fusion.mha.in_proj_weight[2 * n:], fusion.mha.in_proj_bias[2 * n:]
        out_proj = fusion.mha.out_proj

        def value(x):
            return out_proj(x @ w_v.T + b_v)

        by_hand = fusion.norm(value(b) + value(a))
        torch.testing.assert_close(before, by_hand)
        # randomising the query/key projections changes nothing
        fusion.mha.in_proj_weight[:2 * n].normal_(std=3.0)
        fusion.mha.in_proj_bias[:2 * n].normal_(std=3.0)
        after = fusion(a, b)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def test_attention_query_key_gradient_is_exactly_zero():
    torch.manual_seed(0)
    fusion = make_fusion("attention").train()
    n = N_IMG
    random_loss(fusion(torch.randn(4, n), torch.randn(4, n))).backward()
    w, b = fusion.mha.in_proj_weight.grad, fusion.mha.in_proj_bias.grad
    assert torch.count_nonzero(w[:2 * n]) == 0 and torch.count_nonzero(b[:2 * n]) == 0
    assert torch.count_nonzero(w[2 * n:]) > 0 and torch.count_nonzero(b[2 * n:]) > 0
    model = build_multimodal("attention")
    assert zero_rows(model) == {"fusion.mha.in_proj_weight": (0, 256), "fusion.mha.in_proj_bias": (0, 256)}


def test_attention_tokens_attention_is_not_degenerate():
    # with real sequences the query/key projections matter
    torch.manual_seed(0)
    fusion = make_fusion("attention-tokens")
    img, aud = make_inputs(fusion, 2)
    with torch.no_grad():
        before = fusion(img, aud)
        d = SMALL["fused_dim"]
        fusion.img_from_aud.in_proj_weight[:2 * d].normal_(std=1.0)
        after = fusion(img, aud)
    assert not torch.allclose(before, after, atol=1e-4)


def test_attention_tokens_rejects_wrong_token_count():
    fusion = make_fusion("attention-tokens")
    with pytest.raises(ValueError, match="49 image and 100 audio"):
        fusion(torch.randn(1, *IMG_MAP), torch.randn(1, 64, 400))


# --- the whole network -------------------------------------------------------

def net_inputs(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, 28, 28, generator=g), torch.randn(batch, 1, 8000, generator=g)


@pytest.mark.parametrize("name", FUSION_CHOICES)
def test_multimodal_net_logits_and_gradients(name):
    torch.manual_seed(0)
    model = build_multimodal(name).eval()  # eval: no dropout, deterministic
    image, audio = net_inputs(3)
    logits = model(image, audio)
    assert logits.shape == (3, 10)
    check_gradients(model, random_loss(logits))


def test_multimodal_net_train_mode_batch_one():
    torch.manual_seed(0)
    model = build_multimodal("attention-tokens").train()
    assert model(*net_inputs(1)).shape == (1, 10)


def test_multimodal_structure():
    model = build_multimodal("gated", fused_dim=32)
    assert isinstance(model, MultimodalNet)
    assert model.image_featurizer.dropout.p == 0.5 and model.audio_featurizer.dropout.p == 0.5
    assert model.head[0].in_features == model.fusion.out_dim == 256
    assert model.head[0].out_features == 64 and model.head[2].out_features == 10
    assert build_multimodal("bilinear", fused_dim=32).fusion.out_dim == 32
    tokens = build_multimodal("attention-tokens")
    assert not any(".fc." in n for n, _ in tokens.named_parameters())
    with pytest.raises(RuntimeError, match="feature_map"):
        tokens.image_featurizer(torch.zeros(1, 1, 28, 28))


def test_late_fusion_averages_branch_logits():
    model = build_multimodal("late").eval()
    assert isinstance(model, LateFusionNet)
    image, audio = net_inputs(2)
    img_logits, aud_logits = model.branch_logits(image, audio)
    torch.testing.assert_close(model(image, audio), (img_logits + aud_logits) / 2)


# --- loading featurizer weights --------------------------------------------

def featurizers_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_load_from_multimodal_state_dict():
    torch.manual_seed(1)
    source = build_multimodal("concat")
    torch.manual_seed(2)
    target = build_multimodal("bilinear", fused_dim=8)
    assert not featurizers_equal(source.image_featurizer, target.image_featurizer)
    head_before = target.head[0].weight.clone()
    loaded = load_featurizer_weights(target, source.state_dict())
    assert loaded == ["image", "audio"]
    assert featurizers_equal(source.image_featurizer, target.image_featurizer)
    assert featurizers_equal(source.audio_featurizer, target.audio_featurizer)
    assert torch.equal(target.head[0].weight, head_before)  # only featurizers touched


def test_load_only_one_modality_and_into_token_model():
    torch.manual_seed(1)
    source = LateFusionNet()
    target = build_multimodal("attention-tokens")
    assert load_featurizer_weights(target, source.state_dict(), modality="audio") == ["audio"]
    assert torch.equal(target.audio_featurizer.conv[0].weight, source.audio_featurizer.conv[0].weight)
    assert not torch.equal(target.image_featurizer.conv[0].weight, source.image_featurizer.conv[0].weight)


@pytest.mark.parametrize("modality,make", [("image", Conv2Net), ("audio", Conv1Net)])
def test_load_from_unimodal_state_dict(modality, make):
    torch.manual_seed(3)
    unimodal = make()
    target = build_multimodal("concat")
    other = f"{'audio' if modality == 'image' else 'image'}_featurizer"
    other_before = {k: v.clone() for k, v in getattr(target, other).state_dict().items()}
    # wrapper prefixes (torch.compile) are stripped
    state = {f"_orig_mod.{k}": v for k, v in unimodal.state_dict().items()}
    assert load_featurizer_weights(target, state, modality=modality) == [modality]
    assert featurizers_equal(unimodal.featurizer, getattr(target, f"{modality}_featurizer"))
    for k, v in getattr(target, other).state_dict().items():
        assert torch.equal(v, other_before[k])
    with pytest.raises(ValueError, match="modality="):
        load_featurizer_weights(target, unimodal.state_dict())


def test_load_rejects_non_matching_state_dicts():
    target = build_multimodal("concat")
    with pytest.raises(ValueError, match="no featurizer weights"):
        load_featurizer_weights(target, {"fusion.weight": torch.zeros(3), "head.0.bias": torch.zeros(2)})
    with pytest.raises(ValueError, match="no featurizer weights"):
        load_featurizer_weights(target, {})
    bad = {k: v for k, v in Conv2Net().state_dict().items()}
    bad["featurizer.fc.weight"] = torch.zeros(64, 3136)
    before = target.image_featurizer.conv[0].weight.clone()
    with pytest.raises(ValueError, match="shape"):
        load_featurizer_weights(target, bad, modality="image")
    assert torch.equal(target.image_featurizer.conv[0].weight, before)  # nothing half-copied
    partial = {k: v for k, v in Conv2Net().state_dict().items() if "conv.0" not in k}
    with pytest.raises(ValueError, match="lacks"):
        load_featurizer_weights(target, partial, modality="image")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("length, k", [(500, 5), (503, 5), (12, 3)])
def test_mean_pool_steps_gives_avg_pool1d_values_and_under_autograd_is_avg_pool1d(dtype, length, k):
    torch.manual_seed(0)
    # values over many orders of magnitude, so that the order of the additions shows if it differs
    x = (torch.randn(6, 4, length) * torch.exp(3 * torch.randn(6, 4, length))).to(dtype)
    kept = x.clone()
    with torch.inference_mode():
        assert torch.equal(mean_pool_steps(x, k), F.avg_pool1d(x, k, k))
    assert torch.equal(mean_pool_steps(x, k), F.avg_pool1d(x, k, k))  # no gradient asked for
    assert torch.equal(x, kept)  # the input is not written to
    leaf = x.detach().requires_grad_()
    pooled, reference = mean_pool_steps(leaf, k), F.avg_pool1d(leaf, k, k)
    assert type(pooled.grad_fn) is type(reference.grad_fn)  # under autograd: avg_pool1d's own graph
    g = torch.randn(6, 4, length // k, dtype=dtype)
    assert torch.equal(torch.autograd.grad(pooled, leaf, g)[0], torch.autograd.grad(reference, leaf, g)[0])


@pytest.mark.slow  # full-size networks, a training step each
@pytest.mark.parametrize("fusion", FUSION_CHOICES)
def test_every_fusion_trains_a_step_under_bf16_autocast(fusion):
    torch.manual_seed(0)
    model = build_multimodal(fusion)
    device = torch.device("cpu")
    with autocast("bf16", device):
        logits = model(torch.rand(4, 1, 28, 28), torch.randn(4, 1, 8000))
    loss = F.cross_entropy(logits.float(), torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.dtype == torch.float32 for p in model.parameters())
    assert model.audio_featurizer.conv[0].weight.grad.abs().sum() > 0  # the phase-split conv is trained


@pytest.mark.slow  # full-size networks, a training step each
@pytest.mark.parametrize("fusion", FUSION_CHOICES)
def test_every_fusion_takes_a_training_step_with_the_mel_front_end(fusion):
    torch.manual_seed(0)
    model = build_multimodal(fusion, audio_frontend=AudioFrontend("mel"))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    image, audio, label = torch.rand(4, 1, 28, 28), torch.randn(4, 1, 8000), torch.tensor([0, 1, 2, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = F.cross_entropy(model(image, audio), label)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    first_conv = "audio_featurizer.conv.0.weight"
    assert not torch.equal(before[first_conv], model.state_dict()[first_conv])
