"""The base of every component's options model, in a module of its own.

Config, compute and the contracts all need it; keeping it apart from :mod:`harness._core.contracts`
means none of them has to import another to get it (no import circle).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from harness._core.strict import check_strict


class Options(BaseModel):
    """Base for every component's options: unknown keys are errors, values are frozen, scalar types
    are strict (a bool is not an int, a string is not a bool or a number; an int is a float), and a
    float is finite: ``lr = inf`` or ``nan`` would train a NaN model, so it fails validation instead."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value, info: ValidationInfo):
        return check_strict(cls.model_fields[info.field_name].annotation, value)


class NoOptions(Options):
    """For components that take no options."""
