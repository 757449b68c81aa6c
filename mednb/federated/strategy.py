"""Flower's FedAvg and FedProx strategies, made reproducible per site and instrumented.

The aggregation itself is Flower's (``flwr.serverapp.strategy.FedAvg`` / ``FedProx``: the weighted
mean of the replies' arrays by their ``num-examples``; McMahan et al., AISTATS 2017; Li et al.,
MLSys 2020). :class:`SiteTracking` adds what a measurement needs:

* sites, not random node ids: which sites train in a round is drawn from a generator seeded by
  (seed, round), and replies are aggregated in site order, so the same seed gives the same model in
  the Simulation and the Deployment Runtime;
* a failing client stops the run with its error (Flower would silently average the others);
* per-site test AUC/ACC from every evaluation round, and the bytes of the arrays sent each round.
"""
from __future__ import annotations

import numpy as np
from flwr.serverapp.strategy import FedAvg, FedProx

from .exchange import nbytes


class _NodeView:
    """A Grid that exposes only some nodes to a strategy's sampling (everything else is the real Grid)."""

    def __init__(self, grid, node_ids):
        self._grid, self._ids = grid, list(node_ids)

    def get_node_ids(self):
        return list(self._ids)

    def __getattr__(self, name):
        return getattr(self._grid, name)


class SiteTracking:
    """Mixin over a Flower FedAvg-family strategy; see the module docstring.

    sites: {node_id: site}. fraction: share of the sites that train each round (at least one).
    eval_every: client-side evaluation every that many rounds (and always in the last).
    """

    def track(self, sites: dict[int, int], seed: int, rounds: int, fraction: float = 1.0, eval_every: int = 1):
        self.sites, self.seed, self.rounds = dict(sites), int(seed), int(rounds)
        self.site_fraction, self.eval_every = float(fraction), max(1, int(eval_every))
        self.evaluations: list[dict] = []
        self.traffic: list[dict] = []
        self.on_round = None  # called after each aggregation (a progress bar)
        return self

    def _nodes(self, sites) -> list[int]:
        by_site = {s: n for n, s in self.sites.items()}
        return [by_site[s] for s in sorted(sites)]

    def chosen_sites(self, server_round: int) -> list[int]:
        k = len(self.sites)
        n = min(k, max(1, int(round(self.site_fraction * k))))
        rng = np.random.default_rng([self.seed, int(server_round)])
        return sorted(int(s) for s in rng.choice(sorted(self.sites.values()), n, replace=False))

    def configure_train(self, server_round, arrays, config, grid):
        chosen = self.chosen_sites(server_round)
        messages = list(super().configure_train(server_round, arrays, config, _NodeView(grid, self._nodes(chosen))))
        self.traffic.append({"round": server_round, "sites": chosen, "bytes_down": sum(
            nbytes(m.content.array_records.get(self.arrayrecord_key)) for m in messages), "bytes_up": 0})
        return messages

    def _replies(self, replies, what: str) -> list:
        replies = list(replies)
        for m in replies:
            if m.has_error():
                site = self.sites.get(m.metadata.src_node_id, "?")
                raise RuntimeError(f"{what} failed at site {site}: {m.error.reason}")
        return sorted(replies, key=lambda m: self.sites[m.metadata.src_node_id])

    def aggregate_train(self, server_round, replies):
        replies = self._replies(replies, "local training")
        self.traffic[-1]["bytes_up"] = sum(nbytes(m.content.array_records.get(self.arrayrecord_key)) for m in replies)
        out = super().aggregate_train(server_round, replies)
        if self.on_round is not None:
            self.on_round()
        return out

    def configure_evaluate(self, server_round, arrays, config, grid):
        if server_round % self.eval_every and server_round != self.rounds:
            return []
        every = _NodeView(grid, self._nodes(self.sites.values()))
        return super().configure_evaluate(server_round, arrays, config, every)

    def aggregate_evaluate(self, server_round, replies):
        replies = self._replies(replies, "evaluation")
        for m in replies:
            r = next(iter(m.content.metric_records.values()))
            self.evaluations.append({"round": server_round, "site": self.sites[m.metadata.src_node_id],
                                     "test_auc": float(r["auc"]), "test_acc": float(r["acc"]),
                                     "n_test": int(r["num-examples"])})
        return super().aggregate_evaluate(server_round, replies)


class SiteFedAvg(SiteTracking, FedAvg):
    """FedAvg (also used by FedBN, whose clients simply never send their BN arrays)."""


class SiteFedProx(SiteTracking, FedProx):
    """FedProx: Flower puts ``proximal-mu`` in the train config; the client adds the proximal term."""


def make(method: str, mu: float = 0.0):
    """The strategy object of a federated method (sampling of the exposed nodes is total: fraction 1)."""
    common = dict(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1, min_evaluate_nodes=1,
                  min_available_nodes=1)
    if method == "fedprox":
        return SiteFedProx(proximal_mu=float(mu), **common)
    return SiteFedAvg(**common)
