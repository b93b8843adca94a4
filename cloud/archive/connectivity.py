"""Which transformer and phase each meter really hangs on, from its data (pure NumPy, no I/O).

Two independent kinds of evidence, as in the literature (Short 2013, "Advanced metering for
phase identification, transformer identification, and secondary modeling"; Pappu 2018 and
Blakely & Reno 2019 for clustering of voltages):

**Voltage.** A meter sees its transformer's secondary voltage minus the drop in its own service
cable: V_i(t) = V_X,k(t) - R_i I_i(t). The transformer's voltage moves with the load of
everyone on it, so meters on one transformer (and one phase) move together and a meter on
another transformer does not. Per meter:
  1. first differences dV (removes the slow drift every transformer on a feeder shares: the
     medium-voltage drop follows the feeder's daily load);
  2. the own-cable drop removed where the meter reports current: dV' = dV + R_i dI with
     R_i = -cov(dV, dI) / var(dI) fitted per meter and phase, clipped at >= 0 (Short's
     "secondary impedance"); without it a customer's own appliances dominate its voltage;
  3. correlation with every candidate reference: the transformer's balance meter phase voltage
     where it has one, else the median of the meters recorded on it (leave-one-out for small
     transformers, whose median the meter itself would pull). A three-phase meter is scored as
     the mean over its phases of corr(phase k, reference phase k); a single-phase meter as the
     best phase. The phase of a single-phase meter is then the reference phase of the chosen
     transformer it correlates with best, after the transformer's three-phase mean is
     subtracted from both (the part all three phases share says nothing about the phase).

**Energy.** Where the transformer has a balance meter, its residual R_X(t) = E_bal(t) -
sum_recorded E_i(t) is technical loss (a + b E_bal^2, fitted per transformer by least squares)
plus theft plus the energy of mis-recorded meters: a meter recorded on A that hangs on B leaves
-E_i in A's residual and +E_i in B's. Moving it from A to B must then shrink the unexplained
residual of both: `balance_gain` = 1 - (SS'_A + SS'_B) / (SS_A + SS_B) on the loss model's
residual sums of squares, > 0 when the move explains the data better.

**Decision.** Whether another transformer's correlation r_o beats the recorded one's r_r is a
Fisher z test: z = (atanh r_o - atanh r_r) / sqrt(2 / (n_eff - 3)), with n_eff the meter's
sample count corrected for its lag-1 autocorrelation rho (Bartlett: n (1 - rho) / (1 + rho)).
A meter is a transformer suspect when z > `z_flag` (5: a one-sided p of 3e-7, which survives
a Bonferroni correction over every meter x transformer question of a large utility), or when
the voltage leans (z > `z_weak`) and the balance gain of the same move exceeds `gain_flag`, or
(no voltage test) when the balance alone gains more than `gain_flag`. The confidence is the
Bonferroni-corrected 1 - p (times the gain where the energy decided). The phase test is the
same on the phase correlations, with `phase_z_flag`. The thresholds are test statistics, not
volts or correlations: what they flag scales with the data's own noise and length.
Nothing here changes the archive: the caller reports suspicions; an engineer accepts them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cloud.archive import balance, stats

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

MIN_SAMPLES = stats.MIN_SAMPLES  # fewer valid voltage differences: the voltage test cannot run
LOO_MAX_MEMBERS = 12  # transformers this small get a leave-one-out median reference


@dataclass
class ConnectivityInput:
    """Everything the test reads, aligned by index. Missing values are NaN."""

    meter_ids: list[str]
    transformer_ids: list[str]
    recorded_tx: I64  # (N,) index into transformer_ids
    recorded_phase: I64  # (N,) 0..2 for single-phase meters, -1 for three-phase / unknown
    phases: I64  # (N,) 1 or 3: what the meter reports (columns with voltages), not the record
    v: F64  # (N, K, 3) volts per phase; a single-phase meter in column 0
    i: F64 | None = None  # (N, K, 3) amperes, same layout; None: no currents in the data
    tx_v: F64 | None = None  # (X, K, 3) balance meter volts; NaN rows: no balance meter
    energy_wh: F64 | None = None  # (N, K-1) net import per interval
    tx_energy_wh: F64 | None = None  # (X, K-1) balance meter import per interval; NaN: none
    candidates: NDArray[np.bool_] | None = None  # (N, X) allowed targets; None: all


@dataclass
class Settings:
    z_flag: float = 5.0  # Fisher z of "another transformer fits better" to flag (~Bonferroni 1e6)
    gain_flag: float = 0.5  # balance gain of a move to make it without voltages
    z_weak: float = 2.0  # a weaker voltage lean, enough together with a balance gain > gain_flag
    phase_z_flag: float = 5.0  # the same for "another phase fits better"


@dataclass
class ConnectivityResult:
    meter_ids: list[str]
    transformer_ids: list[str]
    recorded_tx: I64
    recorded_phase: I64
    best_tx: I64  # (N,) where the data says the meter hangs (= recorded when not suspect)
    best_phase: I64  # (N,) -1 for three-phase meters or when the voltage test did not run
    r_recorded: F64  # (N,) voltage correlation with the recorded transformer (NaN: no test)
    r_best_other: F64  # (N,) the best other transformer's
    other_tx: I64  # (N,) that other transformer
    z: F64  # (N,) Fisher z of best other vs recorded (NaN: no voltage test)
    phase_r: F64  # (N, 3) correlation with each phase of best_tx (single-phase meters)
    phase_z: F64  # (N,) Fisher z of the best other phase vs the recorded one
    balance_gain: F64  # (N,) gain of moving to other_tx (NaN: no balance meters to test)
    confidence: F64  # (N,) 0..1 that the record is wrong (transformer or phase)
    tx_suspect: NDArray[np.bool_]
    phase_suspect: NDArray[np.bool_]
    voltage_ran: NDArray[np.bool_]
    notes: list[str] = field(default_factory=list)  # why a test could not run

    def suspects(self) -> list[int]:
        """Indices of suspected meters, most confident first."""
        idx = np.flatnonzero(self.tx_suspect | self.phase_suspect)
        return [int(j) for j in idx[np.argsort(-self.confidence[idx], kind="stable")]]


def compensated_dv(v: F64, i: F64 | None) -> F64:
    """(N, K-1, 3) voltage differences with each meter's own service-cable drop removed."""
    dv = np.diff(v, axis=1)
    if i is None:
        return dv
    di = np.diff(i, axis=1)
    ok = np.isfinite(dv) & np.isfinite(di)
    dvz = np.where(ok, dv, 0.0)
    diz = np.where(ok, di, 0.0)
    n = np.maximum(ok.sum(axis=1), 1)
    mv, mi = dvz.sum(axis=1) / n, diz.sum(axis=1) / n
    cov = (np.where(ok, (dv - mv[:, None]) * (di - mi[:, None]), 0.0)).sum(axis=1) / n
    var = (np.where(ok, (di - mi[:, None]) ** 2, 0.0)).sum(axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(var > 0, np.maximum(-cov / var, 0.0), 0.0)
    out: F64 = np.where(np.isfinite(di), dv + r[:, None, :] * di, dv)
    return out


def references(inp: ConnectivityInput, dv: F64) -> tuple[F64, NDArray[np.bool_]]:
    """(X, K-1, 3) reference voltage differences per transformer phase, and whether each
    transformer's reference is its balance meter (True) or its members' median (False)."""
    n_x = len(inp.transformer_ids)
    t = dv.shape[1]
    ref = np.full((n_x, t, 3), np.nan)
    from_balance = np.zeros(n_x, np.bool_)
    if inp.tx_v is not None:
        dtx = np.diff(inp.tx_v, axis=1)
        has = np.isfinite(dtx).sum(axis=(1, 2)) >= MIN_SAMPLES
        ref[has] = dtx[has]
        from_balance = has
    for x in np.flatnonzero(~from_balance).tolist():
        ref[x] = _member_median(inp, dv, x, exclude=-1)
    return ref, from_balance


def _member_series(inp: ConnectivityInput, dv: F64, x: int, k: int, exclude: int) -> F64:
    members = np.flatnonzero(inp.recorded_tx == x)
    members = members[members != exclude]
    rows = []
    for j in members:
        if inp.phases[j] == 3:
            rows.append(dv[j, :, k])
        elif inp.recorded_phase[j] == k:
            rows.append(dv[j, :, 0])
    return np.array(rows) if rows else np.full((0, dv.shape[1]), np.nan)


def _member_median(inp: ConnectivityInput, dv: F64, x: int, exclude: int) -> F64:
    out = np.full((dv.shape[1], 3), np.nan)
    for k in range(3):
        rows = _member_series(inp, dv, x, k, exclude)
        if len(rows):
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[:, k] = np.nanmedian(rows, axis=0)
    return out


def transformer_scores(inp: ConnectivityInput, dv: F64, ref: F64) -> tuple[F64, I64]:
    """(N, X) voltage score of each meter against each transformer, and (N, X) the phase a
    single-phase meter matches best there (-1 for three-phase meters)."""
    n, n_x = dv.shape[0], ref.shape[0]
    score = np.full((n, n_x), np.nan)
    phase = np.full((n, n_x), -1, np.int64)
    one = np.flatnonzero(inp.phases == 1)
    three = np.flatnonzero(inp.phases == 3)
    if len(one):
        r = np.stack([stats.corr(dv[one, :, 0], ref[:, :, k]) for k in range(3)], axis=2)  # (n1, X, 3)
        allnan = np.all(np.isnan(r), axis=2)
        best = np.where(allnan[..., None], -np.inf, np.nan_to_num(r, nan=-np.inf)).argmax(axis=2)
        score[one] = np.where(allnan, np.nan, np.take_along_axis(r, best[..., None], 2)[..., 0])
        phase[one] = best
    if len(three):
        r3 = np.stack([stats.corr(dv[three, :, k], ref[:, :, k]) for k in range(3)], axis=2)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            score[three] = np.nanmean(r3, axis=2)
    return score, phase


def analyse(inp: ConnectivityInput, settings: Settings | None = None) -> ConnectivityResult:
    """Score every meter and decide (module docstring)."""
    s = settings or Settings()
    n, n_x = len(inp.meter_ids), len(inp.transformer_ids)
    notes: list[str] = []
    dv = compensated_dv(inp.v, inp.i)
    if inp.i is None:
        notes.append("no currents in the data: the own-cable voltage drop is not removed")
    ref, from_balance = references(inp, dv)
    if not from_balance.all():
        notes.append(
            f"{int((~from_balance).sum())} transformer(s) without balance-meter voltages: "
            "referenced by their recorded meters' median"
        )
    score, phase_at = transformer_scores(inp, dv, ref)
    # Leave-one-out for meters on small transformers referenced by their members' median.
    for x in np.flatnonzero(~from_balance).tolist():
        members = np.flatnonzero(inp.recorded_tx == x)
        if len(members) > LOO_MAX_MEMBERS:
            continue
        for j in members.tolist():
            ref_j = ref.copy()
            ref_j[x] = _member_median(inp, dv, x, exclude=int(j))
            sub = ConnectivityInput(
                [inp.meter_ids[j]], inp.transformer_ids, inp.recorded_tx[[j]], inp.recorded_phase[[j]],
                inp.phases[[j]], inp.v[[j]],
            )
            sc, ph = transformer_scores(sub, dv[[j]], ref_j)
            score[j], phase_at[j] = sc[0], ph[0]
    if inp.candidates is not None:
        score = np.where(inp.candidates, score, np.nan)
    rows = np.arange(n)
    unplaced = inp.recorded_tx < 0  # reports, but the archive does not place it
    rec = np.where(unplaced, 0, inp.recorded_tx)
    r_rec = np.where(unplaced, np.nan, score[rows, rec]) if n else np.zeros(0)
    other = score.copy()
    other[rows[~unplaced], rec[~unplaced]] = np.nan
    allnan = np.all(np.isnan(other), axis=1) if n_x else np.ones(n, np.bool_)
    other_tx = np.where(allnan, -1, np.nan_to_num(other, nan=-np.inf).argmax(axis=1)).astype(np.int64)
    r_other = np.where(allnan, np.nan, other[rows, np.maximum(other_tx, 0)])
    voltage_ran = np.isfinite(r_rec) & np.isfinite(r_other)
    if not voltage_ran.any():
        notes.append("voltage test did not run: fewer than "
                     f"{MIN_SAMPLES} valid voltage differences per meter")
    n_eff = stats.effective_n(dv[:, :, 0])
    z = np.where(voltage_ran, stats.fisher_z(r_other, r_rec, n_eff), np.nan)
    tx_susp = voltage_ran & (np.nan_to_num(z, nan=-np.inf) > s.z_flag)
    conf = np.where(tx_susp, stats.bonferroni_conf(z, n * max(n_x - 1, 1)), 0.0)
    if unplaced.any():  # placement: best vs second best, no suspicion (there is no record)
        second = score.copy()
        second[rows, np.maximum(other_tx, 0)] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r2 = np.nanmax(np.where(np.isfinite(second), second, -np.inf), axis=1)
        zp = stats.fisher_z(r_other, np.where(np.isfinite(r2), r2, np.nan), n_eff)
        conf = np.where(unplaced & np.isfinite(r_other), stats.bonferroni_conf(zp, n_x), conf)
        z = np.where(unplaced, np.nan, z)
    rec = np.where(unplaced, -1, rec)

    # Energy: apply the voltage's moves, then let the balance move meters the voltage could
    # not test (greedy, best gain first), then measure each move's gain with all others kept.
    gain = np.full(n, np.nan)
    if inp.energy_wh is not None and inp.tx_energy_wh is not None and n and n_x > 1:
        tx_now = np.where(tx_susp, other_tx, rec).astype(np.int64)
        bal = balance.Balance(inp.energy_wh, inp.tx_energy_wh, tx_now)
        untested = np.flatnonzero(~voltage_ran & ~unplaced & bal.has[np.maximum(rec, 0)])
        allowed = inp.candidates if inp.candidates is not None else np.ones((n, n_x), np.bool_)
        for _ in range(max(len(untested), 0)):
            if not len(untested):
                break
            g = bal.gains(untested)
            g = np.where(allowed[untested], g, np.nan)
            if not np.isfinite(g).any():
                break
            flat = int(np.nanargmax(g))
            jj, b = divmod(flat, n_x)
            if g[jj, b] <= s.gain_flag:
                break
            j = int(untested[jj])
            bal.move(j, b)
            other_tx[j] = b
            tx_susp[j] = True
            untested = untested[untested != j]
        moved = np.flatnonzero(bal.tx_of != rec)
        for j in moved.tolist():  # leave-one-out gain: undo j, ask what moving it back again buys
            b = int(bal.tx_of[j])
            bal.move(int(j), int(rec[j]))
            gj = bal.gains(np.array([j]))[0, b]
            bal.move(int(j), b)
            gain[j] = gj
        # and for meters that stay, the gain of the voltage's best other (evidence for the list)
        stay = np.flatnonzero((bal.tx_of == rec) & (other_tx >= 0) & ~unplaced)
        if len(stay):
            g = bal.gains(stay)
            gain[stay] = g[np.arange(len(stay)), other_tx[stay]]
            # Two independent weaker signals that agree: the voltage leans to the other
            # transformer and the energy balance says the move explains it.
            both = stay[(np.nan_to_num(z[stay], nan=-np.inf) > s.z_weak)
                        & (np.nan_to_num(gain[stay], nan=-np.inf) > s.gain_flag)]
            tx_susp[both] = True
            m_tests = n * max(n_x - 1, 1) // 100 + 1
            conf[both] = np.clip(gain[both], 0.0, 1.0) * stats.bonferroni_conf(z[both], m_tests)
        e_only = tx_susp & ~voltage_ran
        conf = np.where(e_only, np.clip(gain, 0.0, 1.0), conf)
        if not bal.has.all():
            notes.append(f"{int((~bal.has).sum())} transformer(s) without balance energy: "
                         "no energy test for their meters")
    else:
        notes.append("energy test did not run: no interval energy for meters and balance meters")
    best_tx = np.where(tx_susp | unplaced, other_tx, rec).astype(np.int64)

    # Phase of single-phase meters on their (best) transformer, after removing the part the
    # three phases share.
    phase_r = np.full((n, 3), np.nan)
    one = np.flatnonzero(inp.phases == 1)
    if len(one) and n_x:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_ref = np.nanmean(ref, axis=2, keepdims=True)
        ref_c = ref - mean_ref
        for j in one.tolist():
            x = int(best_tx[j])
            if x < 0:
                continue
            sj = dv[j, :, 0] - mean_ref[x, :, 0]
            phase_r[j] = stats.corr(sj[None], ref_c[x].T)[0]
    rp = inp.recorded_phase
    valid_rp = (rp >= 0) & (inp.phases == 1)
    r_rec_ph = np.where(valid_rp, phase_r[rows, np.maximum(rp, 0)], np.nan)
    ph_other = phase_r.copy()
    ph_other[rows[valid_rp], rp[valid_rp]] = np.nan
    ph_all_nan = np.all(np.isnan(ph_other), axis=1)
    best_other_ph = np.where(ph_all_nan, -1, np.nan_to_num(ph_other, nan=-np.inf).argmax(axis=1))
    r_oth_ph = np.where(ph_all_nan, np.nan, ph_other[rows, np.maximum(best_other_ph, 0)])
    phase_z = np.where(valid_rp & ~tx_susp, stats.fisher_z(r_oth_ph, r_rec_ph, n_eff), np.nan)
    phase_susp = np.nan_to_num(phase_z, nan=-np.inf) > s.phase_z_flag
    best_phase = np.where(inp.phases == 1, np.where(phase_susp, best_other_ph, rp), -1)
    # A transformer move carries its phase: the best phase at the new transformer; a meter the
    # record gives no phase (recorded three-phase) gets the best one as a suggestion.
    best_phase = np.where((tx_susp | (rp < 0) | unplaced) & (inp.phases == 1)
                          & np.isfinite(phase_r).any(axis=1),
                          np.nan_to_num(phase_r, nan=-np.inf).argmax(axis=1), best_phase).astype(np.int64)
    conf_ph = np.where(phase_susp, stats.bonferroni_conf(phase_z, max(len(one), 1) * 2), 0.0)
    confidence = np.maximum(conf, conf_ph)
    return ConnectivityResult(
        meter_ids=inp.meter_ids, transformer_ids=inp.transformer_ids, recorded_tx=rec,
        recorded_phase=rp, best_tx=best_tx, best_phase=best_phase, r_recorded=r_rec,
        r_best_other=r_other, other_tx=other_tx, z=z, phase_r=phase_r, phase_z=phase_z,
        balance_gain=gain, confidence=confidence, tx_suspect=tx_susp, phase_suspect=phase_susp,
        voltage_ran=voltage_ran, notes=notes,
    )
