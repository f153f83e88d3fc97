"""analysis: the measurements notebook 04 makes on trained features."""
import torch
from torch import nn

from simkd_lite import analysis


def test_train_linear_head_recovers_a_linear_rule(one_thread):
    torch.manual_seed(0)
    features = torch.randn(600, 8)
    rule = nn.Linear(8, 3)
    labels = rule(features).argmax(1)  # linearly separable by construction
    head = analysis.train_linear_head(features, labels, num_classes=3, weight_decay=0.0)
    assert isinstance(head, nn.Linear) and not head.training
    assert not any(p.requires_grad for p in head.parameters())
    assert (head(features).argmax(1) == labels).float().mean() > 0.98
    again = analysis.train_linear_head(features, labels, num_classes=3, weight_decay=0.0)
    assert torch.equal(again.weight, head.weight)  # deterministic: full-batch L-BFGS from a seeded start


def test_train_linear_head_is_no_better_than_chance_on_random_labels(one_thread):
    torch.manual_seed(1)
    train, test = torch.randn(400, 4), torch.randn(400, 4)
    head = analysis.train_linear_head(train, torch.randint(0, 4, (400,)), num_classes=4)
    accuracy = (head(test).argmax(1) == torch.randint(0, 4, (400,))).float().mean()
    assert accuracy < 0.4
