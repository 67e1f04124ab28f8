"""slm_loss / static_loss against values worked out by hand (explicit formulas here, never slm_loss itself)."""
import math

import pytest
import torch
import torch.nn.functional as F

from rho_torch import slm_loss, static_loss

LN2, LN3 = math.log(2), math.log(3)
NAN = float('nan')

# One sequence of 8 tokens, vocabulary 3. logits[t] predicts token t+1 (HF convention).
# Row [0,0,0] gives p = 1/3 each; [ln2,0,0] gives p = (1/2, 1/4, 1/4); [0,ln3,0] gives (1/5, 3/5, 1/5).
LOGITS = [
    [0, 0, 0],       # t0 -> token 1 = 1:   CE = ln 3            ref -0.1  -> excess ln3 - 0.1 = 0.9986
    [LN2, 0, 0],     # t1 -> token 2 = 0:   CE = ln 2            ref -2.0  -> excess ln2 - 2.0 = -1.3069
    [LN2, 0, 0],     # t2 -> token 3 = 2:   CE = ln 4            ref -1.0  -> excess ln4 - 1.0 = 0.3863
    [0, 0, 0],       # t3 -> token 4 = 0:   ref NaN (no context)  -> not a candidate
    [LN2, 0, 0],     # t4 -> token 5 = 1:   label -100            -> not a candidate
    [0, LN3, 0],     # t5 -> token 6 = 0:   CE = ln 5            ref -0.5  -> excess ln5 - 0.5 = 1.1094
    [0, 0, 0],       # t6 -> token 7 = 2:   CE = ln 3            ref -1.2  -> excess ln3 - 1.2 = -0.1014
    [5, 1, 2],       # t7: predicts past the end, never used
]
LABELS = [2, 1, 0, 2, 0, -100, 0, 2]           # labels[0] has no logits before it: never a target
REF = [NAN, -0.1, -2.0, -1.0, NAN, -0.7, -0.5, -1.2]
CE = {0: LN3, 1: LN2, 2: 2 * LN2, 5: math.log(5), 6: LN3}         # candidates' cross-entropy, by hand
EXCESS = {0: LN3 - 0.1, 1: LN2 - 2.0, 2: 2 * LN2 - 1.0, 5: math.log(5) - 0.5, 6: LN3 - 1.2}
SOFTMAX = {0: [1 / 3] * 3, 5: [0.2, 0.6, 0.2], 2: [0.5, 0.25, 0.25]}
TARGET = {0: 1, 1: 0, 2: 2, 5: 0, 6: 2}


def example(requires_grad=True):
    logits = torch.tensor([LOGITS], dtype=torch.float32, requires_grad=requires_grad)
    return logits, torch.tensor([LABELS]), torch.tensor([REF], dtype=torch.float32)


def test_hand_computed_example_ratio_0_4():
    logits, labels, ref = example()
    loss, st = slm_loss(logits, labels, ref, 0.4)
    # 5 candidates (t0, t1, t2, t5, t6); k = ceil(0.4 * 5) = 2: the two largest excess are t5 (1.109), t0 (0.999)
    assert st.n_valid == 5 and st.n_selected == 2
    assert loss.item() == pytest.approx((math.log(5) + LN3) / 2, abs=1e-6)
    assert st.threshold == pytest.approx(LN3 - 0.1, abs=1e-6)
    assert st.mask[0].tolist() == [True, False, False, False, False, True, False]
    assert st.valid[0].tolist() == [True, True, True, False, False, True, True]
    for t, ce in CE.items():
        assert st.token_loss[0, t].item() == pytest.approx(ce, abs=1e-6)
        assert st.excess[0, t].item() == pytest.approx(EXCESS[t], abs=1e-6)

    # Gradient: d loss / d logits[t] = (softmax - onehot(target)) / k on selected rows, exactly 0 elsewhere.
    loss.backward()
    g = logits.grad[0]
    for t in range(8):
        if t in (0, 5):
            want = [(p - (1.0 if v == TARGET[t] else 0.0)) / 2 for v, p in enumerate(SOFTMAX[t])]
            assert g[t].tolist() == pytest.approx(want, abs=1e-6), t
        else:
            assert torch.count_nonzero(g[t]).item() == 0, t


def test_hand_computed_example_more_ratios():
    logits, labels, ref = example(requires_grad=False)
    # k = ceil(0.6 * 5) = 3 adds t2 (excess 0.386)
    loss, st = slm_loss(logits, labels, ref, 0.6)
    assert st.n_selected == 3
    assert loss.item() == pytest.approx((math.log(5) + LN3 + 2 * LN2) / 3, abs=1e-6)
    assert st.threshold == pytest.approx(2 * LN2 - 1.0, abs=1e-6)
    # ratio 1: every candidate, i.e. the mean CE over tokens with a label and a reference score
    loss, st = slm_loss(logits, labels, ref, 1.0)
    assert st.n_selected == 5
    assert loss.item() == pytest.approx(sum(CE.values()) / 5, abs=1e-6)
    assert st.threshold == pytest.approx(LN2 - 2.0, abs=1e-6)
    # tiny ratio still selects one token
    loss, st = slm_loss(logits, labels, ref, 0.01)
    assert st.n_selected == 1 and loss.item() == pytest.approx(math.log(5), abs=1e-6)


def test_selection_is_over_the_whole_batch_not_per_sequence():
    # CE = ln 3 everywhere, so excess = ln 3 + ref: sequence 0 (ref -0.1, -0.2: easy for the reference) holds
    # both high-excess tokens; top-50% of 4 candidates takes both from it, none from sequence 1.
    logits = torch.zeros(2, 3, 3, requires_grad=True)
    labels = torch.tensor([[0, 1, 2], [0, 1, 2]])
    ref = torch.tensor([[NAN, -0.1, -0.2], [NAN, -3.0, -2.5]])
    loss, st = slm_loss(logits, labels, ref, 0.5)
    assert st.mask.tolist() == [[True, True], [False, False]]
    assert loss.item() == pytest.approx(LN3, abs=1e-6)
    loss.backward()
    assert torch.count_nonzero(logits.grad[1]).item() == 0
    assert torch.count_nonzero(logits.grad[0, :2]).item() == 6


def test_k_is_exact_for_paper_ratios():
    # 0.6 * 10 = 6.000000000000001 and 0.7 * 10 = 7.000000000000001 in floating point: still 6 and 7 tokens.
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 11, 7, generator=g)
    labels = torch.randint(0, 7, (1, 11), generator=g)
    ref = -torch.rand(1, 11, generator=g)
    for ratio, k in [(0.6, 6), (0.7, 7), (0.55, 6), (0.61, 7), (1.0, 10)]:
        assert slm_loss(logits, labels, ref, ratio)[1].n_selected == k, ratio


def test_shift_false_is_the_caller_aligned_form():
    logits, labels, ref = example(requires_grad=False)
    a, sa = slm_loss(logits, labels, ref, 0.6)
    b, sb = slm_loss(logits[:, :-1], labels[:, 1:], ref[:, 1:], 0.6, shift=False)
    assert a.item() == b.item() and torch.equal(sa.mask, sb.mask)


def test_ratio_and_shape_validation():
    logits, labels, ref = example(requires_grad=False)
    for bad in [0, 0.0, -0.1, 1.5, NAN, 'a', None, True]:
        with pytest.raises(ValueError, match=r'ratio .* must be a number in \(0, 1\]'):
            slm_loss(logits, labels, ref, bad)
    with pytest.raises(ValueError, match='ref_logprob must be'):
        slm_loss(logits, labels, ref[:, :-1], 0.6)
    with pytest.raises(ValueError, match='logits must be'):
        slm_loss(logits[0], labels, ref, 0.6)


def test_no_candidate_gives_zero_loss_that_still_backpropagates():
    logits = torch.zeros(1, 4, 3, requires_grad=True)
    loss, st = slm_loss(logits, torch.tensor([[0, -100, -100, 1]]), torch.tensor([[NAN, -1.0, -1.0, NAN]]), 0.6)
    assert st.n_selected == 0 and st.n_valid == 0 and math.isnan(st.threshold)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad).item() == 0


def test_static_loss_is_cross_entropy_with_ignore_index():
    logits, labels, _ = example(requires_grad=False)
    # Targets labels[1:]; t4 (label -100) is ignored: mean over t0,t1,t2,t3,t5,t6 (t3: token 0 under [0,0,0], CE ln 3)
    want = (LN3 + LN2 + 2 * LN2 + LN3 + math.log(5) + LN3) / 6
    assert static_loss(logits, labels).item() == pytest.approx(want, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    lg = torch.randn(3, 9, 11, generator=g)
    lab = torch.randint(0, 11, (3, 9), generator=g)
    lab[lab % 3 == 0] = -100
    ref = F.cross_entropy(lg[:, :-1].reshape(-1, 11), lab[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(static_loss(lg, lab), ref, atol=1e-6, rtol=0)
    assert torch.allclose(static_loss(lg[:, :-1], lab[:, 1:], shift=False), ref, atol=1e-6, rtol=0)


def test_static_loss_with_nothing_selected_is_zero_with_zero_gradient():
    logits = torch.randn(2, 5, 7, requires_grad=True)
    loss = static_loss(logits, torch.full((2, 5), -100))
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    loss.backward()
    assert torch.count_nonzero(logits.grad).item() == 0
    # slm_loss too, even with infinite logits somewhere
    lg = torch.zeros(1, 4, 3)
    lg[0, 1, 2] = float('inf')
    lg.requires_grad_(True)
    loss, st = slm_loss(lg, torch.full((1, 4), -100), torch.full((1, 4), -1.0), 0.6)
    assert loss.item() == 0.0 and st.n_selected == 0
    loss.backward()
    assert torch.count_nonzero(lg.grad).item() == 0


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_chunked_cross_entropy_matches_float32_cross_entropy_values_and_gradients(dtype):
    from rho_torch.loss import token_cross_entropy
    g = torch.Generator().manual_seed(3)
    B, T, V = 3, 13, 50
    base = (torch.randn(B, T, V, generator=g) * 3).to(dtype)
    y = torch.randint(0, V, (B, T), generator=g)
    y[0, 2] = -100
    w = torch.randn(B, T, generator=g)
    # Reference: today's formula, a float32 copy of the whole logits.
    a = base.clone().requires_grad_(True)
    ce_ref = F.cross_entropy(a.reshape(-1, V).float(), y.reshape(-1), ignore_index=-100, reduction='none').view(B, T)
    (ce_ref * w).sum().backward()
    for chunk_elements in (V, 4 * V, 1 << 24):  # one position per chunk, 4 per chunk, everything in one chunk
        b = base.clone().requires_grad_(True)
        ce = token_cross_entropy(b, y, chunk_elements=chunk_elements)
        assert ce.dtype == torch.float32
        assert torch.allclose(ce, ce_ref, atol=1e-5, rtol=1e-5), chunk_elements
        (ce * w).sum().backward()
        tol = 1e-6 if dtype == torch.float32 else 1e-2  # bf16 gradients are rounded to bf16 in both
        assert torch.allclose(b.grad.float(), a.grad.float(), atol=tol, rtol=tol), chunk_elements
        assert torch.count_nonzero(b.grad[0, 2]).item() == 0


def test_slm_loss_gradients_match_the_float32_formula_on_random_batches():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 17, 40, generator=g)
    labels = torch.randint(0, 40, (2, 17), generator=g)
    labels[1, 3:6] = -100
    ref = -torch.rand(2, 17, generator=g) * 4
    a = logits.clone().requires_grad_(True)
    loss, st = slm_loss(a, labels, ref, 0.6)
    loss.backward()
    # Independent: float32 CE of the selected tokens, by the mask slm_loss reports.
    b = logits.clone().requires_grad_(True)
    ce = F.cross_entropy(b[:, :-1].reshape(-1, 40), labels[:, 1:].reshape(-1), ignore_index=-100, reduction='none')
    want = ce[st.mask.reshape(-1)].sum() / st.n_selected
    want.backward()
    assert loss.item() == pytest.approx(want.item(), abs=1e-6)
    assert torch.allclose(a.grad, b.grad, atol=1e-7)
