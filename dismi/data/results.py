"""The shape of a result: the two representations, the judges that read them, and `Results`, the
figures of one evaluation nested the same way everywhere (evaluate.json, tables, figures, studies).

    held_out[probe][representation][figure]   fresh classifiers on train-split codes, scored on test images
    online[protocol][representation][factor]  the classifiers trained beside the encoders (dvclive logs)
    retrieval[representation][factor]         k-nearest-neighbour precision on test images
    dependence                                fresh critics on (S, E): dismi.eval.dependence

Adding a probe kind is one `ProbeKind` here (the model builds its online classifiers from `PROBES`,
evaluation trains one bank per kind, tables and figures loop over them); CONTRIBUTING.md says which
other files a new metric touches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dismi.data.factors import FACTORS
from dismi.util.errors import DismiError

REPRESENTATIONS = ("shared", "exclusive")
SYMBOL = {"shared": "S", "exclusive": "E"}


@dataclass(frozen=True)
class ProbeKind:
    """A classifier kind that judges a representation (Table V's two hidden layers of `hidden` units)."""

    name: str
    label: str  # in tables and figures
    detail: str  # what it is, beside the label in figure legends
    width: int | None  # hidden units; None: as many as the factor has classes (Table V as written)
    online_prefix: str  # dvclive prefix of its online accuracies: <prefix>/<representation>/<factor>

    def hidden(self, n_classes: int) -> int:
        return self.width or n_classes


# "paper" is Table V as written, what the paper's and the report's accuracies were read with; "wide" (2x256)
# reads out weaker dependences: the stricter judge of disentanglement. Order matters: the online classifiers
# are initialised in this order from the stage's seed.
PROBES = {
    "paper": ProbeKind("paper", "paper probe", "Table V", None, "acc_paper"),
    "wide": ProbeKind("wide", "wide probe", "2x256", 256, "acc_wide"),
}
# The online protocols: each probe kind's classifiers read on test batches, and "earlier", the
# `online_earlier` measurement: paper-width classifiers trained and read as the earlier implementations
# did (softmax before the cross-entropy, accuracy on training batches).
EARLIER = ProbeKind("earlier", "earlier protocol", "softmax before the cross-entropy", None, "acc_earlier")
ONLINE = {**PROBES, "earlier": EARLIER}
HELD_OUT_FIGURES = (*FACTORS, "distance_to_ideal")


# evaluate.json before the judges were named (rows saved in docs/reproduction): where each figure was.
def probe(name: str) -> ProbeKind:
    try:
        return PROBES[name]
    except KeyError:
        raise ValueError(f"probe must be one of {tuple(PROBES)}, got {name!r}") from None


def check_representation(rep: str) -> str:
    if rep not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {rep!r}")
    return rep


def _figures(node, keys: tuple[str, ...], where: str) -> dict[str, float]:
    if not isinstance(node, Mapping):
        raise DismiError(f"{where} is missing")
    bad = [k for k in keys if not isinstance(node.get(k), (int, float)) or isinstance(node.get(k), bool)]
    if bad:
        raise DismiError(f"{where} has no number for {', '.join(bad)}")
    return {k: float(node[k]) for k in keys}


@dataclass
class Results:
    """The figures of one evaluation. Every number a fraction (accuracies) or nats (dependence)."""

    held_out: dict[str, dict[str, dict[str, float]]]
    online: dict[str, dict[str, dict[str, float]]]
    retrieval: dict[str, dict[str, float]]
    dependence: dict | None = field(default=None)

    def final(self, probe_name: str, rep: str) -> dict[str, float]:
        return self.held_out[probe_name][rep]

    def to_json(self) -> dict:
        out = {"held_out": self.held_out, "online": self.online, "retrieval": self.retrieval}
        return out | ({"dependence": self.dependence} if self.dependence is not None else {})

    @classmethod
    def from_json(cls, blob: Mapping, where: str = "evaluate.json", complete: bool = True) -> Results:
        """Validated: every probe, representation and figure present as a number, else one line naming
        the first missing one; `complete=False` needs only the held-out figures (what studies compare)."""
        if not isinstance(blob, Mapping):
            raise DismiError(f"{where} is not a JSON object: rerun the evaluate stage")
        try:
            held_out = {
                p: {
                    rep: _figures(
                        blob.get("held_out", {}).get(p, {}).get(rep), HELD_OUT_FIGURES, f"{where} held_out.{p}.{rep}"
                    )
                    for rep in REPRESENTATIONS
                }
                for p in PROBES
            }
            online = {
                p: {
                    rep: _figures(blob.get("online", {}).get(p, {}).get(rep), FACTORS, f"{where} online.{p}.{rep}")
                    for rep in REPRESENTATIONS
                }
                for p in ONLINE
                if (complete and p in PROBES) or p in blob.get("online", {})
            }
            retrieval = (
                {
                    rep: _figures(blob.get("retrieval", {}).get(rep), FACTORS, f"{where} retrieval.{rep}")
                    for rep in REPRESENTATIONS
                }
                if complete or "retrieval" in blob
                else {}
            )
        except (AttributeError, DismiError) as e:
            msg = str(e) if isinstance(e, DismiError) else f"{where} is not nested as dismi.data.results says"
            raise DismiError(f"{msg}: rerun the evaluate stage (dvc repro evaluate)") from None
        return cls(held_out, online, retrieval, blob.get("dependence"))
