"""Distortion schedules: which distortion a camera applies at a given time or frame.

A schedule is a list of phases ``"<distortion>@<duration>"`` where the duration is seconds
(``60s``) or frames (``500f``); a phase without a duration lasts forever. With ``cycle`` the
phases repeat (a day/night cycle).

>>> s = Schedule.parse(["pristine@2f", "noise:0.1@1f", "blur:1.0"])
>>> [str(s.at(frame=i, seconds=0.0)) for i in range(5)]
['pristine', 'pristine', 'noise:0.1', 'blur:1', 'blur:1']
>>> c = Schedule.parse(["pristine@10s", "brightness:0.3@10s"], cycle=True)
>>> [str(c.at(frame=0, seconds=t)) for t in (5, 15, 25)]
['pristine', 'brightness:0.3', 'pristine']
"""

from __future__ import annotations

from dataclasses import dataclass

from splitee.distortions import Distortion


@dataclass(frozen=True)
class Phase:
    distortion: Distortion
    length: float | None  # None = forever
    unit: str  # "s" or "f"


@dataclass(frozen=True)
class Schedule:
    phases: tuple[Phase, ...]
    cycle: bool = False

    @classmethod
    def parse(cls, specs: list[str], cycle: bool = False) -> Schedule:
        phases = []
        for spec in specs or ["pristine"]:
            dist, sep, dur = spec.partition("@")
            if not sep:
                phases.append(Phase(Distortion.parse(dist), None, "f"))
                continue
            unit = dur[-1:]
            if unit not in ("s", "f"):
                raise ValueError(f"phase {spec!r}: duration must end in 's' or 'f', e.g. 60s")
            try:
                length = float(dur[:-1])
            except ValueError:
                raise ValueError(f"phase {spec!r}: bad duration {dur!r}") from None
            if length <= 0:
                raise ValueError(f"phase {spec!r}: duration must be positive")
            phases.append(Phase(Distortion.parse(dist), length, unit))
        units = {p.unit for p in phases if p.length is not None}
        if len(units) > 1:
            raise ValueError("a schedule uses either seconds or frames, not both")
        if cycle and any(p.length is None for p in phases):
            raise ValueError("a cycling schedule needs a duration on every phase")
        return cls(tuple(phases), cycle)

    def at(self, frame: int, seconds: float) -> Distortion:
        """The distortion in force at frame number ``frame``, ``seconds`` after the start."""
        pos = None
        for p in self.phases:
            if p.length is not None:
                pos = float(frame) if p.unit == "f" else seconds
                break
        if pos is None:
            return self.phases[0].distortion
        total = sum(p.length or 0.0 for p in self.phases)
        if self.cycle and total > 0:
            pos %= total
        for p in self.phases:
            if p.length is None or pos < p.length:
                return p.distortion
            pos -= p.length
        return self.phases[-1].distortion
