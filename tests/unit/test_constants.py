"""The code families of iopv/core/constants.py: folded by numba like plain ints, one meaning per name.

A family is a namedtuple of ints; a kernel reading ``TickOutcome.LATE`` must compile to the same
machine code as one reading the literal, or the scoping would cost the hot path."""

from __future__ import annotations

import re

import numpy as np
from numba import njit

from iopv.core import constants
from iopv.core.constants import (
    FUND_FLAG_WORDS,
    FUND_STATUS_WORDS,
    N_OUTCOMES,
    REASONS,
    FundFlag,
    FundStatus,
    TickFloatRow,
    TickIntRow,
    TickOutcome,
)


@njit
def _family(codes, ints):
    total = 0
    for k in range(codes.size):
        if codes[k] == TickOutcome.LATE:
            total += ints[TickIntRow.TS, k] | FundFlag.RECOVERING
    return total


@njit
def _literal(codes, ints):
    total = 0
    for k in range(codes.size):
        if codes[k] == 19:
            total += ints[1, k] | 32
    return total


def _machine_code(kernel) -> list[str]:
    """The kernel's assembly without its own names (symbols and constant labels differ by name)."""
    asm = next(iter(kernel.inspect_asm().values()))
    asm = re.sub(r"_ZN\S+|\.const\.\S+", "NAME", asm)
    return [line for line in asm.splitlines() if line.strip() and not line.strip().startswith((".", "#"))]


def test_a_family_member_compiles_to_the_same_machine_code_as_its_literal():
    codes = np.array([19, 0, 19], dtype=np.int64)
    ints = np.arange(10, dtype=np.int64).reshape(5, 2)[:, :1].repeat(3, axis=1).copy()
    assert _family(codes, ints) == _literal(codes, ints)
    assert _machine_code(_family) == _machine_code(_literal)


def test_each_family_has_distinct_codes_and_the_published_words_do_not_change():
    for family in (TickOutcome, FundFlag, FundStatus, TickIntRow, TickFloatRow):
        assert len(set(family)) == len(family)
    assert N_OUTCOMES == len(REASONS) == TickOutcome.HELD_OVERFLOW + 1
    assert REASONS[TickOutcome.HALTED_PRICE] == "halted"
    assert REASONS[TickOutcome.TRADING_STATUS] == "status"
    assert REASONS[TickOutcome.BAD_TRADING_STATUS] == "bad_status"
    assert FUND_STATUS_WORDS[FundStatus.HALTED] == "halted"
    assert [FUND_FLAG_WORDS[bit.bit_length() - 1] for bit in FundFlag] == [
        "stale", "halted", "low_coverage", "fund_halted", "side_fallback", "recovering"]


def test_no_bare_code_outside_a_family():
    """Every int the module exports is a number of the time family or a family's length; the
    codes themselves live in families (one meaning per name)."""
    loose = {name for name, value in vars(constants).items()
             if name.isupper() and type(value) is int}
    assert loose == {"DAY_NS", "NEVER_TS", "MAX_TS", "FIXED_TS", "N_OUTCOMES", "N_CLOCK", "N_SIDES", "N_RATIOS",
                     "N_COUNTS", "N_TERM_COLS", "N_INT_ROWS", "N_TAPE_INT_ROWS", "N_FLOAT_ROWS"}
