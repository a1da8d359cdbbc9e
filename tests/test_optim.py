import torch

from universal_attention.optim import adam


def test_adam_is_fused_on_the_cpu_and_updates_as_the_per_tensor_loop_does():
    torch.manual_seed(0)
    weights = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    copies = [w.detach().clone().requires_grad_() for w in weights]
    fused = adam([{"params": weights[:1], "lr": 0.1}, {"params": weights[1:], "lr": 0.01}], betas=(0.0, 0.999))
    loop = torch.optim.Adam(
        [{"params": copies[:1], "lr": 0.1}, {"params": copies[1:], "lr": 0.01}], betas=(0.0, 0.999), foreach=False
    )
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    for _ in range(3):
        for optimizer, tensors in ((fused, weights), (loop, copies)):
            optimizer.zero_grad()
            sum((t**2).sum() for t in tensors).backward()
            optimizer.step()
    for mine, theirs in zip(weights, copies):
        torch.testing.assert_close(mine, theirs)


def test_adam_falls_back_to_the_loop_for_parameters_the_fused_kernel_cannot_take():
    assert not adam([torch.zeros(2, device="meta", requires_grad=True)], lr=0.1).defaults["fused"]
