"""`WindowCounts`: the edges of the last hour and the last day, a clock that steps back or
jumps, the key cap, and keys that age out."""

from __future__ import annotations

from decnet.swarm.http.windows import HOUR, MINUTE, WindowCounts, WindowTotals

#: the start of an hour (so minute and hour edges are easy to name)
T0 = 1_800_000_000.0 - 1_800_000_000.0 % HOUR


def counts(**kw: int) -> dict[str, int]:
    return dict(kw)


def test_a_count_stays_in_the_hour_for_sixty_minute_buckets() -> None:
    window = WindowCounts(10)
    window.add(counts(R1=3), T0 + 30)  # minute 0
    assert window.totals(T0 + 59 * MINUTE + 59) == {"R1": WindowTotals(3, 3)}
    # minute 60: minute 0 leaves the hour (the current minute and the 59 before it)
    assert window.totals(T0 + 60 * MINUTE) == {"R1": WindowTotals(0, 3)}


def test_a_count_stays_in_the_day_for_twenty_four_hour_buckets() -> None:
    window = WindowCounts(10)
    window.add(counts(R1=2), T0 + 5)
    window.add(counts(R1=1), T0 + 5 * HOUR)
    assert window.totals(T0 + 23 * HOUR + 3599) == {"R1": WindowTotals(0, 3)}
    assert window.totals(T0 + 24 * HOUR) == {"R1": WindowTotals(0, 1)}
    # a key with nothing left in the day is dropped
    assert window.totals(T0 + 29 * HOUR) == {}
    assert len(window) == 0


def test_counts_add_up_within_a_bucket_and_across_keys() -> None:
    window = WindowCounts(10)
    for second in range(0, 120, 10):
        window.add(counts(R1=1, R2=2), T0 + second)
    assert window.totals(T0 + 120) == {"R1": WindowTotals(12, 12), "R2": WindowTotals(24, 24)}
    assert window.per_minute("R1", T0 + 120) == [(int(T0 // 60), 6), (int(T0 // 60) + 1, 6)]
    assert window.per_minute("nobody", T0 + 120) == []


def test_a_clock_that_steps_back_counts_into_the_newest_bucket() -> None:
    window = WindowCounts(10)
    window.add(counts(R1=1), T0 + 10 * MINUTE)
    window.add(counts(R1=1), T0 + 2 * MINUTE)  # NTP stepped the clock back
    assert window.per_minute("R1", T0 + 10 * MINUTE) == [(int(T0 // 60) + 10, 2)]
    assert window.totals(T0) == {"R1": WindowTotals(2, 2)}


def test_a_jump_of_days_empties_every_bucket() -> None:
    window = WindowCounts(10)
    window.add(counts(R1=5), T0)
    window.add(counts(R2=1), T0 + 3 * 86_400)
    assert window.totals(T0 + 3 * 86_400) == {"R2": WindowTotals(1, 1)}
    window.add(counts(R2=1), T0 + 3 * 86_400 + 30 * MINUTE)
    assert window.totals(T0 + 3 * 86_400 + 61 * MINUTE) == {"R2": WindowTotals(1, 2)}


def test_keys_past_the_cap_are_counted_as_omitted() -> None:
    window = WindowCounts(2)
    window.add(counts(R1=1, R2=1, R3=4, R4=5), T0)
    assert set(window.totals(T0)) == {"R1", "R2"}
    assert window.omitted_totals(T0) == WindowTotals(9, 9)
    assert window.omitted_totals(T0 + HOUR) == WindowTotals(0, 9)
    # once R1 and R2 age out of the day, new keys get their own counters again
    window.add(counts(R5=1), T0 + 25 * HOUR)
    assert window.totals(T0 + 25 * HOUR) == {"R5": WindowTotals(1, 1)}
    assert window.omitted_totals(T0 + 25 * HOUR) == WindowTotals(0, 0)
