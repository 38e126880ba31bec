"""examples/hello.py written in PyTorch (CPU, eager): the comparison for the startup workload.

Same data, model (Xavier-uniform weight, zero bias), SGD 0.01, MSE, 500
full-batch epochs; prints the last loss and the prediction for x = 10.
"""

from __future__ import annotations

import torch


def main(epochs: int = 500) -> float:
    torch.manual_seed(0)
    xs = torch.tensor([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]])
    ys = 2 * xs - 1
    model = torch.nn.Linear(1, 1)
    torch.nn.init.xavier_uniform_(model.weight)
    torch.nn.init.zeros_(model.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.MSELoss()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(xs), ys)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        prediction = float(model(torch.tensor([[10.0]]))[0, 0])
    print(f"loss after {epochs} epochs: {float(loss):.6f}")
    print(f"prediction for x = 10: {prediction:.4f} (the rule y = 2x - 1 gives 19)")
    return prediction


if __name__ == "__main__":
    main()
