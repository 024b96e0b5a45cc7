"""Room for loaded model versions: a budget of versions and/or bytes, and which idle version
makes room for another (the least recently used one that loads on demand)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.errors import DoesNotFit
from service.versions import ModelVersion

IN_MEMORY = ("loading", "ready", "unloading")


@dataclass(frozen=True)
class Budget:
    max_versions: int | None = None
    max_bytes: int | None = None

    def check_fits(self, mv: ModelVersion, held: Iterable[ModelVersion]) -> None:
        """DoesNotFit if `mv` cannot fit even with every version that may go unloaded."""
        fixed = [m for m in held if m.state in IN_MEMORY and not m.on_demand and m is not mv]
        what = f"model {mv.name!r} version {mv.version}"
        if self.max_versions is not None and len(fixed) >= self.max_versions:
            raise DoesNotFit(
                f"{what} cannot load: the {len(fixed)} versions that are never unloaded fill "
                f"RNNSERVE_MAX_LOADED_MODELS={self.max_versions}"
            )
        if self.max_bytes is not None:
            room = self.max_bytes - sum(m.size for m in fixed)
            if mv.size > room:
                raise DoesNotFit(
                    f"{what} needs {megabytes(mv.size)} and the memory budget "
                    f"(RNNSERVE_MAX_LOADED_BYTES={megabytes(self.max_bytes)}) has "
                    f"{megabytes(max(room, 0))} for versions that load on demand"
                )

    def has_room(self, mv: ModelVersion, held: Iterable[ModelVersion]) -> bool:
        """Whether `mv` fits beside what is in memory now, counting versions still unloading."""
        return self._fits(mv, [m for m in held if m.state in IN_MEMORY and m is not mv])

    def will_have_room(self, mv: ModelVersion, held: Iterable[ModelVersion]) -> bool:
        """Whether `mv` fits once the versions unloading now are gone."""
        staying = [m for m in held if m.state in ("loading", "ready") and m is not mv]
        return self._fits(mv, staying)

    def _fits(self, mv: ModelVersion, staying: list[ModelVersion]) -> bool:
        if self.max_versions is not None and len(staying) + 1 > self.max_versions:
            return False
        return self.max_bytes is None or sum(m.size for m in staying) + mv.size <= self.max_bytes


def least_recently_used(held: Iterable[ModelVersion]) -> ModelVersion | None:
    """The idle, loaded, on-demand version that waited longest for a request."""
    idle = [m for m in held if m.on_demand and m.state == "ready" and m.active == 0]
    return min(idle, key=lambda m: m.last_used, default=None)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
