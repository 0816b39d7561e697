"""Compiled feature kernels (numba): one standalone kernel per per-ticker family, and the cross-section.

Each per-ticker family kernel (``TICKER_KERNELS``) reads a range of tickers' rows (each sorted by
date) and writes its family's features straight into the shared output matrix ``out[feature, row]``
(float32), in exactly the order that ``stockml_core.features.registry`` lists them; ``lb[feature]``
is each feature's warm-up, and rows before it are written as NaN. No kernel is ``parallel=True``:
they release the GIL (``nogil``), and the engine runs (family, tickers) and date-range tasks on a
thread pool of ``numba.get_num_threads()`` threads. Each kernel compiles on its own, with one
signature (see the family kernels' comment below for the compile times). A value at row i reads
rows <= i only: windows are trailing, filters run forward, and nothing is normalised over the whole
series.

Windowed sums use compensated (double-double) prefix sums: a window sum is the difference of two
prefix sums whose rounding error is carried in a second word, so it is accurate to about one unit in
the last place of the window sum itself whatever came before. That is what makes the incremental
one-day path (which sees only the last ``MAX_LOOKBACK`` rows) agree with the full recompute.
"""

import math

import numpy as np
from numba import njit

NAN = np.nan
WINDOWS = (5, 10, 20, 30, 60)  # the Alpha158-style rolling windows
# Below these the quantity is treated as exactly zero (a flat window), never divided by.
_REL_FLAT = 1e-13  # variance relative to mean^2 for price/volume levels
_ABS_FLAT = 1e-20  # variance of returns-like series
_RSI_FLAT = 1e-9  # RSI points: a 14-row RSI range below this is rounding noise (prices flat), not a move


# ------------------------------------------------------------------------------------------ helpers


@njit(inline="always")
def _put(out, rows, k, s, vals, lb):
    """Write ``vals`` as feature ``k`` (output row ``rows[k]``, none if -1) from column ``s`` on (NaN before its warm-up)."""
    if rows[k] < 0:
        return k + 1
    n = vals.shape[0]
    first = min(lb[k], n)
    row = out[rows[k]]
    for i in range(first):
        row[s + i] = NAN
    for i in range(first, n):
        row[s + i] = vals[i]
    return k + 1


@njit
def _prefix(x, first):
    """Compensated prefix sums of x[first:] (entries before ``first`` count as 0): (hi, lo), n + 1 long."""
    n = x.shape[0]
    hi = np.zeros(n + 1)
    lo = np.zeros(n + 1)
    acc = 0.0
    err = 0.0
    for i in range(n):
        if i >= first:
            a = x[i]
            t = acc + a
            bp = t - acc
            err += (acc - (t - bp)) + (a - bp)
            acc = t
        hi[i + 1] = acc
        lo[i + 1] = err
    return hi, lo


@njit(inline="always")
def _ws(p, i, w):
    """Sum of the w rows ending at row i from a ``_prefix`` pair (caller ensures i - w + 1 >= 0)."""
    hi, lo = p
    return (hi[i + 1] - hi[i + 1 - w]) + (lo[i + 1] - lo[i + 1 - w])


@njit
def _nan(n):
    out = np.empty(n)
    out[:] = NAN
    return out


@njit(inline="always")
def _ratio(num, den, fill):
    return fill if den == 0.0 else num / den


@njit
def _ema(x, alpha, seed_at):
    """y[seed_at] = x[seed_at], then y = y[-1] + alpha (x - y[-1]) (pandas ewm adjust=False)."""
    n = x.shape[0]
    y = _nan(n)
    if seed_at < n:
        y[seed_at] = x[seed_at]
        for i in range(seed_at + 1, n):
            y[i] = (1.0 - alpha) * y[i - 1] + alpha * x[i]
    return y


@njit
def _sma(p, n, w, first):
    out = _nan(n)
    for i in range(first + w - 1, n):
        out[i] = _ws(p, i, w) / w
    return out


@njit
def _std_pop(p1, p2, n, w, first, relative):
    """Population std over w rows from prefix sums of x and x^2; 0 on a flat window."""
    out = _nan(n)
    for i in range(first + w - 1, n):
        m = _ws(p1, i, w) / w
        var = _ws(p2, i, w) / w - m * m
        flat = _REL_FLAT * m * m if relative else _ABS_FLAT
        out[i] = 0.0 if var <= flat else math.sqrt(var)
    return out


@njit
def _corr(px, py, pxx, pyy, pxy, n, w, first, rel_x, rel_y):
    """Pearson correlation over w rows; 0 when either side is flat."""
    out = _nan(n)
    for i in range(first + w - 1, n):
        mx = _ws(px, i, w) / w
        my = _ws(py, i, w) / w
        vx = _ws(pxx, i, w) / w - mx * mx
        vy = _ws(pyy, i, w) / w - my * my
        cov = _ws(pxy, i, w) / w - mx * my
        fx = _REL_FLAT * mx * mx if rel_x else _ABS_FLAT
        fy = _REL_FLAT * my * my if rel_y else _ABS_FLAT
        if vx <= fx or vy <= fy:
            out[i] = 0.0
        else:
            r = cov / math.sqrt(vx * vy)
            out[i] = min(1.0, max(-1.0, r))
    return out


@njit
def _extreme(x, n, w, sign):
    """Trailing max (sign 1) or min (sign -1) over w rows and the rows since its oldest occurrence.

    Van Herk / Gil-Werman: in blocks of w rows, the running extreme from each block's start and the
    one to each block's end (with the row it comes from, the oldest on ties); the window ending at row
    i is the suffix from row i - w + 1 joined with the prefix to row i. Three branch-free passes, O(1)
    per row whatever the window.
    """
    val = _nan(n)
    age = _nan(n)
    if n < w:
        return val, age
    pv = np.empty(n)  # extreme from the block's start to row i, and its (oldest) row
    pi = np.empty(n, dtype=np.int64)
    sv = np.empty(n)  # extreme from row i to the block's end, and its (oldest) row
    si = np.empty(n, dtype=np.int64)
    for b0 in range(0, n, w):
        b1 = min(b0 + w, n)
        cur = sign * x[b0]
        ci = b0
        pv[b0] = cur
        pi[b0] = b0
        for i in range(b0 + 1, b1):
            xi = sign * x[i]
            newer = xi > cur  # strictly: an equal value keeps the older row
            cur = xi if newer else cur
            ci = i if newer else ci
            pv[i] = cur
            pi[i] = ci
        cur = sign * x[b1 - 1]
        ci = b1 - 1
        sv[b1 - 1] = cur
        si[b1 - 1] = ci
        for i in range(b1 - 2, b0 - 1, -1):
            xi = sign * x[i]
            older = xi >= cur  # an equal value moves to the older row
            cur = xi if older else cur
            ci = i if older else ci
            sv[i] = cur
            si[i] = ci
    for i in range(w - 1, n):
        j = i - w + 1
        older = sv[j] >= pv[i]  # the suffix part holds the older rows
        val[i] = sign * (sv[j] if older else pv[i])
        age[i] = i - (si[j] if older else pi[i])
    return val, age


@njit
def _roll_max(x, n, w):
    return _extreme(x, n, w, 1.0)[0]


@njit
def _roll_min(x, n, w):
    return _extreme(x, n, w, -1.0)[0]


@njit
def _first_argmax_age(x, n, w, sign):
    """Rows since the first (oldest) occurrence of the window's max (sign=1) or min (sign=-1)."""
    return _extreme(x, n, w, sign)[1]


@njit
def _true_range(h, l, c, n):
    """max(high, prev close) - min(low, prev close); row 0 is high - low (as ``ta`` does)."""
    tr = np.empty(n)
    tr[0] = h[0] - l[0]
    for i in range(1, n):
        tr[i] = max(h[i], c[i - 1]) - min(l[i], c[i - 1])
    return tr


@njit
def _atr(tr, n, w):
    """``ta`` AverageTrueRange: mean of the first w true ranges, then Wilder's recursion."""
    out = _nan(n)
    if n >= w:
        acc = 0.0
        for i in range(w):
            acc += tr[i]
        out[w - 1] = acc / w
        for i in range(w, n):
            out[i] = (out[i - 1] * (w - 1) + tr[i]) / float(w)
    return out


@njit
def _wilder_sum(x, n, w):
    """``ta`` ADX smoothing: S[w] = x[1] + ... + x[w], then S[j] = S[j-1] - S[j-1] / w + x[j]."""
    out = _nan(n)
    if n > w:
        acc = 0.0
        for i in range(1, w + 1):
            acc += x[i]
        out[w] = acc
        for i in range(w + 1, n):
            out[i] = out[i - 1] - (out[i - 1] / float(w)) + x[i]
    return out


@njit
def _rsi(c, n, w):
    """``ta`` RSIIndicator: Wilder EMAs (alpha 1/w, seeded at row 0 with 0) of up and down moves."""
    up = np.zeros(n)
    dn = np.zeros(n)
    for i in range(1, n):
        d = c[i] - c[i - 1]
        if d > 0:
            up[i] = d
        elif d < 0:
            dn[i] = -d
    eu = _ema(up, 1.0 / w, 0)
    ed = _ema(dn, 1.0 / w, 0)
    out = np.empty(n)
    for i in range(n):
        tot = eu[i] + ed[i]
        out[i] = 50.0 if tot == 0.0 else 100.0 * eu[i] / tot
    return out


# ------------------------------------------------------------------------------- the family kernels
#
# One function per per-ticker family of the registry (``_returns`` writes the ``returns`` block, and
# so on): each writes its family's features in registry order from the block's first feature, each
# ``_put`` labelled with the feature it writes, and returns the feature after its block. The engine
# passes every block's first feature and checks each block's count against the registry, so a
# feature is found by name: registry -> its family's kernel -> the labelled ``_put``.
#
# Only the entry kernels the engine calls (``ticker_<family>``, ``cross_section``, ``scatter_rows``,
# ``group_rows``) are cached on disk: each holds the machine code of every helper it calls, and the
# helpers, compiled in memory by whichever process needs them, are never written to the cache, so the
# two compile processes of ``compile.py`` never write the same cache entry at once (numba's cache
# index has no lock between processes).
#
# Each family runs in its own standalone kernel, ``ticker_<family>`` below, which loops over a range
# of tickers, computes only the shared series its family reads (by the same arithmetic as every
# other family that reads them) and calls the family; no kernel calls another family, so each
# compiles (and is cached) on its own, once. Until issue 32 the eight families (and the shared
# series) were inlined (``inline="always"``) into one per-ticker kernel, called from a
# ``parallel=True`` prange wrapper: from an empty cache that took 72 s for the kernel and 49 s more
# for the wrapper (numba links every callee's LLVM module into its caller and optimises the linked
# whole again; the prange lowering adds its own passes), 143-169 s of ``make install`` on 2 cores.
# Now every kernel compiles in 51-53 s of CPU, one after the other in one process (alone: rolling 14,
# trend 12, volatility 8, volume 7, momentum 7, beta 4, the cross-section about 3), and ``compile.py``
# spreads them over two processes: 30-36 s in all. The families are called, not inlined: inlined
# into their ``ticker_<family>`` they compiled in 59-62 s (alternating, same machine). Run time: the
# same as the single inlined kernel within noise (1.06x on 2 threads, 0.91x CPU on one thread),
# bit-identical output.


@njit
def _daily_returns(c):
    """Simple daily return c[i] / c[i - 1] - 1 (NaN on row 0)."""
    n = c.shape[0]
    r = _nan(n)
    for i in range(1, n):
        r[i] = c[i] / c[i - 1] - 1.0
    return r


@njit
def _squared(r):
    """r[i] ** 2 of the daily returns (0 on row 0)."""
    n = r.shape[0]
    r2 = np.zeros(n)
    for i in range(1, n):
        r2[i] = r[i] * r[i]
    return r2


@njit
def _close_change(c):
    """c[i] - c[i - 1] (0 on row 0)."""
    n = c.shape[0]
    diff = np.zeros(n)
    for i in range(1, n):
        diff[i] = c[i] - c[i - 1]
    return diff


@njit
def _returns(o, c, n, buf, out, rows, k, s, lb):
    """The ``returns`` block: close / close k rows back and the day's gaps."""
    for kk in (1, 2, 3, 5, 10, 20, 60, 120, 250):
        buf[:] = NAN
        for i in range(kk, n):
            buf[i] = c[i] / c[i - kk] - 1.0
        k = _put(out, rows, k, s, buf, lb)  # ret_{1,2,3,5,10,20,60,120,250}
    buf[:] = NAN
    for i in range(1, n):
        buf[i] = o[i] / c[i - 1] - 1.0
    k = _put(out, rows, k, s, buf, lb)  # gap_overnight
    for i in range(n):
        buf[i] = c[i] / o[i] - 1.0
    k = _put(out, rows, k, s, buf, lb)  # intraday_ret
    buf[:] = NAN
    for i in range(250, n):
        buf[i] = c[i - 20] / c[i - 250] - 1.0
    k = _put(out, rows, k, s, buf, lb)  # mom_250_20
    return k


@njit
def _candle(o, h, l, c, n, buf, out, rows, k, s, lb):
    """The ``candle`` block: the day's bar shape."""
    for which in range(5):
        for i in range(n):
            rng = h[i] - l[i]
            if which == 0:
                buf[i] = _ratio(c[i] - o[i], rng, 0.0)
            elif which == 1:
                buf[i] = _ratio(h[i] - max(o[i], c[i]), rng, 0.0)
            elif which == 2:
                buf[i] = _ratio(min(o[i], c[i]) - l[i], rng, 0.0)
            elif which == 3:
                buf[i] = rng / c[i]
            else:
                buf[i] = _ratio(c[i] - l[i], rng, 0.5)
        k = _put(out, rows, k, s, buf, lb)  # candle_body, candle_upper_shadow, candle_lower_shadow, candle_range, close_location
    return k


@njit
def _volatility(o, h, l, c, r, r2, tr, pr1, pr2, pc1, pc2, n, buf, out, rows, k, s, lb):
    """The ``volatility`` block: return, range and channel volatility."""
    r3 = np.zeros(n)
    r4 = np.zeros(n)
    dn2 = np.zeros(n)
    for i in range(1, n):
        r3[i] = r2[i] * r[i]
        r4[i] = r2[i] * r2[i]
        dn2[i] = r2[i] if r[i] < 0 else 0.0
    vols = np.empty((5, n))
    for wi, w in enumerate((5, 10, 20, 60, 120)):
        vols[wi, :] = NAN
        for i in range(w, n):
            m = _ws(pr1, i, w) / w
            var = (_ws(pr2, i, w) - w * m * m) / (w - 1)
            vols[wi, i] = 0.0 if var <= _ABS_FLAT else math.sqrt(var)
        k = _put(out, rows, k, s, vols[wi], lb)  # volatility_{5,10,20,60,120}
    for a, b in ((0, 2), (2, 3), (2, 4)):  # 5/20, 20/60, 20/120
        for i in range(n):
            buf[i] = _ratio(vols[a, i], vols[b, i], 1.0)
        k = _put(out, rows, k, s, buf, lb)  # volatility_ratio_{5_20,20_60,20_120}
    pd2 = _prefix(dn2, 1)
    buf[:] = NAN
    for i in range(20, n):
        buf[i] = math.sqrt(_ws(pd2, i, 20) / 20.0)
    k = _put(out, rows, k, s, buf, lb)  # downside_vol_20
    pr3 = _prefix(r3, 1)
    pr4 = _prefix(r4, 1)
    for which in range(2):  # ret_skew_60, ret_kurt_60 (population moments)
        buf[:] = NAN
        for i in range(60, n):
            m1 = _ws(pr1, i, 60) / 60.0
            e2 = _ws(pr2, i, 60) / 60.0
            e3 = _ws(pr3, i, 60) / 60.0
            m2 = e2 - m1 * m1
            if m2 <= _ABS_FLAT:
                buf[i] = 0.0
            elif which == 0:
                m3 = e3 - 3.0 * m1 * e2 + 2.0 * m1 * m1 * m1
                buf[i] = m3 / m2**1.5
            else:
                e4 = _ws(pr4, i, 60) / 60.0
                m4 = e4 - 4.0 * m1 * e3 + 6.0 * m1 * m1 * e2 - 3.0 * m1**4
                buf[i] = m4 / (m2 * m2) - 3.0
        k = _put(out, rows, k, s, buf, lb)  # ret_skew_60, ret_kurt_60
    hl2 = np.empty(n)
    gk = np.empty(n)
    rs = np.empty(n)
    ln2 = math.log(2.0)
    for i in range(n):
        lh = math.log(h[i])
        ll = math.log(l[i])
        lc = math.log(c[i])
        lo_ = math.log(o[i])
        a = lh - ll
        b = lc - lo_
        hl2[i] = a * a
        gk[i] = 0.5 * a * a - (2.0 * ln2 - 1.0) * b * b
        rs[i] = (lh - lc) * (lh - lo_) + (ll - lc) * (ll - lo_)
    phl = _prefix(hl2, 0)
    for w in (10, 20, 60):
        buf[:] = NAN
        for i in range(w - 1, n):
            buf[i] = math.sqrt(max(_ws(phl, i, w), 0.0) / (w * 4.0 * ln2))
        k = _put(out, rows, k, s, buf, lb)  # parkinson_vol_{10,20,60}
    pgk = _prefix(gk, 0)
    for w in (10, 20, 60):
        buf[:] = NAN
        for i in range(w - 1, n):
            buf[i] = math.sqrt(max(_ws(pgk, i, w) / w, 0.0))
        k = _put(out, rows, k, s, buf, lb)  # garman_klass_vol_{10,20,60}
    prs = _prefix(rs, 0)
    buf[:] = NAN
    for i in range(19, n):
        buf[i] = math.sqrt(max(_ws(prs, i, 20) / 20.0, 0.0))
    k = _put(out, rows, k, s, buf, lb)  # rogers_satchell_vol_20
    for w in (5, 10, 14):
        atr = _atr(tr, n, w)
        for i in range(n):
            buf[i] = atr[i] / c[i]
        k = _put(out, rows, k, s, buf, lb)  # atr_{5,10,14}_rel
    sma20 = _sma(pc1, n, 20, 0)
    sd20 = _std_pop(pc1, pc2, n, 20, 0, True)
    for i in range(n):
        buf[i] = _ratio(c[i] - (sma20[i] - 2.0 * sd20[i]), 4.0 * sd20[i], 0.5)
    k = _put(out, rows, k, s, buf, lb)  # bb_pct_b_20
    for i in range(n):
        buf[i] = 4.0 * sd20[i] / sma20[i]
    k = _put(out, rows, k, s, buf, lb)  # bb_width_20
    ema20 = _ema(c, 2.0 / 21.0, 0)
    atr10 = _atr(tr, n, 10)
    for i in range(n):  # keltner_pct_20: (c - (ema20 - 2 atr10)) / (4 atr10)
        buf[i] = _ratio(c[i] - (ema20[i] - 2.0 * atr10[i]), 4.0 * atr10[i], 0.5)
    k = _put(out, rows, k, s, buf, lb)  # keltner_pct_20
    for i in range(n):
        buf[i] = 4.0 * atr10[i] / ema20[i]
    k = _put(out, rows, k, s, buf, lb)  # keltner_width_20
    return k


@njit
def _momentum(h, l, c, v, tp, diff, ad, ptr1, n, buf, out, rows, k, s, lb):
    """The ``momentum`` block: oscillators."""
    rsi14 = _rsi(c, n, 14)
    for w in (6, 14, 21):
        k = _put(out, rows, k, s, rsi14 if w == 14 else _rsi(c, n, w), lb)  # rsi_{6,14,21}
    hh14 = _roll_max(h, n, 14)
    ll14 = _roll_min(l, n, 14)
    stk = _nan(n)
    for i in range(13, n):
        stk[i] = _ratio(100.0 * (c[i] - ll14[i]), hh14[i] - ll14[i], 50.0)
    k = _put(out, rows, k, s, stk, lb)  # stoch_k_14
    buf[:] = NAN
    for i in range(15, n):
        buf[i] = (stk[i - 2] + stk[i - 1] + stk[i]) / 3.0
    k = _put(out, rows, k, s, buf, lb)  # stoch_d_3
    for i in range(n):
        buf[i] = _ratio(-100.0 * (hh14[i] - c[i]), hh14[i] - ll14[i], -50.0)
    k = _put(out, rows, k, s, buf, lb)  # williams_r_14
    rmax = _roll_max(rsi14, n, 14)
    rmin = _roll_min(rsi14, n, 14)
    for i in range(n):
        rng = rmax[i] - rmin[i]  # flat prices leave the RSI constant up to rounding: that window is flat
        buf[i] = 0.5 if rng <= _RSI_FLAT else (rsi14[i] - rmin[i]) / rng
    k = _put(out, rows, k, s, buf, lb)  # stoch_rsi_14
    ptp = _prefix(tp, 0)
    buf[:] = NAN
    for i in range(19, n):
        m = _ws(ptp, i, 20) / 20.0
        mad = 0.0
        for j in range(i - 19, i + 1):
            mad += abs(tp[j] - m)
        mad /= 20.0
        buf[i] = 0.0 if mad <= 1e-12 * abs(m) else (tp[i] - m) / (0.015 * mad)
    k = _put(out, rows, k, s, buf, lb)  # cci_20
    pos = np.zeros(n)
    neg = np.zeros(n)
    for i in range(1, n):
        flow = tp[i] * v[i]
        if tp[i] > tp[i - 1]:
            pos[i] = flow
        elif tp[i] < tp[i - 1]:
            neg[i] = flow
    ppos = _prefix(pos, 1)
    pneg = _prefix(neg, 1)
    buf[:] = NAN
    for i in range(14, n):
        a = _ws(ppos, i, 14)
        b = _ws(pneg, i, 14)
        buf[i] = _ratio(100.0 * a, a + b, 50.0)
    k = _put(out, rows, k, s, buf, lb)  # mfi_14
    bp = np.zeros(n)
    for i in range(1, n):
        bp[i] = c[i] - min(l[i], c[i - 1])
    pbp = _prefix(bp, 1)
    buf[:] = NAN
    for i in range(28, n):
        acc = 0.0
        for w, wt in ((7, 4.0), (14, 2.0), (28, 1.0)):
            acc += wt * _ratio(_ws(pbp, i, w), _ws(ptr1, i, w), 0.5)
        buf[i] = 100.0 * acc / 7.0
    k = _put(out, rows, k, s, buf, lb)  # ultimate_osc
    mp = (h + l) / 2.0
    pmp = _prefix(mp, 0)
    buf[:] = NAN
    for i in range(33, n):
        buf[i] = (_ws(pmp, i, 5) / 5.0 - _ws(pmp, i, 34) / 34.0) / c[i]
    k = _put(out, rows, k, s, buf, lb)  # awesome_osc_rel
    sm = _ema(_ema(diff, 2.0 / 26.0, min(1, n)), 2.0 / 14.0, min(25, n))
    sa = _ema(_ema(ad, 2.0 / 26.0, min(1, n)), 2.0 / 14.0, min(25, n))
    for i in range(n):
        buf[i] = _ratio(100.0 * sm[i], sa[i], 0.0)
    k = _put(out, rows, k, s, buf, lb)  # tsi
    return k


@njit
def _trend(h, l, c, tr, ptr1, pc1, n, buf, out, rows, k, s, lb):
    """The ``trend`` block: moving averages, ADX, SAR, Ichimoku, Aroon, Vortex, TRIX, mass index, DPO, ulcer."""
    e12 = _ema(c, 2.0 / 13.0, 0)
    e26 = _ema(c, 2.0 / 27.0, 0)
    macd = e12 - e26
    sig = _ema(macd, 2.0 / 10.0, min(25, n))
    for which in range(3):
        for i in range(n):
            if which == 0:
                buf[i] = macd[i] / c[i]
            elif which == 1:
                buf[i] = sig[i] / c[i]
            else:
                buf[i] = (macd[i] - sig[i]) / c[i]
        k = _put(out, rows, k, s, buf, lb)  # macd_rel, macd_signal_rel, macd_hist_rel
    for w in (10, 20, 40):
        e = _ema(c, 2.0 / (w + 1.0), 0)
        for i in range(n):
            buf[i] = c[i] / e[i] - 1.0
        k = _put(out, rows, k, s, buf, lb)  # close_to_ema_{10,20,40}
    # ADX(14) as ta computes it: Wilder sums of TR, +DM, -DM; DI = 100 S+/S_TR; ADX = Wilder mean of DX.
    pdm = np.zeros(n)
    ndm = np.zeros(n)
    for i in range(1, n):
        up = h[i] - h[i - 1]
        down = l[i - 1] - l[i]
        if up > down and up > 0:
            pdm[i] = up
        if down > up and down > 0:
            ndm[i] = down
    str_ = _wilder_sum(tr, n, 14)
    spos = _wilder_sum(pdm, n, 14)
    sneg = _wilder_sum(ndm, n, 14)
    dip = _nan(n)
    din = _nan(n)
    dx = _nan(n)
    for i in range(14, n):
        dip[i] = 0.0 if str_[i] == 0 else 100.0 * (spos[i] / str_[i])
        din[i] = 0.0 if str_[i] == 0 else 100.0 * (sneg[i] / str_[i])
        dx[i] = 0.0 if dip[i] + din[i] == 0 else 100.0 * abs((dip[i] - din[i]) / (dip[i] + din[i]))
    adx = _nan(n)
    if n >= 28:
        acc = 0.0
        for i in range(14, 28):
            acc += dx[i]
        adx[27] = acc / 14.0
        for i in range(28, n):
            adx[i] = ((adx[i - 1] * 13.0) + dx[i]) / 14.0
    k = _put(out, rows, k, s, adx, lb)  # adx_14
    k = _put(out, rows, k, s, dip, lb)  # adx_pos_14
    k = _put(out, rows, k, s, din, lb)  # adx_neg_14
    # Parabolic SAR (step 0.02, max 0.2), ta's recursion started at the ticker's first row.
    sar = c.copy()
    trend = np.ones(n)
    up_trend = True
    af = 0.02
    up_high = h[0]
    down_low = l[0]
    for i in range(2, n):
        reversal = False
        if up_trend:
            sar[i] = sar[i - 1] + af * (up_high - sar[i - 1])
            if l[i] < sar[i]:
                reversal = True
                sar[i] = up_high
                down_low = l[i]
                af = 0.02
            else:
                if h[i] > up_high:
                    up_high = h[i]
                    af = min(af + 0.02, 0.2)
                if l[i - 2] < sar[i]:
                    sar[i] = l[i - 2]
                elif l[i - 1] < sar[i]:
                    sar[i] = l[i - 1]
        else:
            sar[i] = sar[i - 1] - af * (sar[i - 1] - down_low)
            if h[i] > sar[i]:
                reversal = True
                sar[i] = down_low
                up_high = h[i]
                af = 0.02
            else:
                if l[i] < down_low:
                    down_low = l[i]
                    af = min(af + 0.02, 0.2)
                if h[i - 2] > sar[i]:
                    sar[i] = h[i - 2]
                elif h[i - 1] > sar[i]:
                    sar[i] = h[i - 1]
        up_trend = up_trend != reversal
        trend[i] = 1.0 if up_trend else 0.0
    for i in range(n):
        buf[i] = (c[i] - sar[i]) / c[i]
    k = _put(out, rows, k, s, buf, lb)  # psar_dist
    k = _put(out, rows, k, s, trend, lb)  # psar_up
    h9 = _roll_max(h, n, 9)
    l9 = _roll_min(l, n, 9)
    h26, age_h = _extreme(h, n, 26, 1.0)
    l26, age_l = _extreme(l, n, 26, -1.0)
    h52 = _roll_max(h, n, 52)
    l52 = _roll_min(l, n, 52)
    for which in range(5):
        for i in range(n):
            conv = 0.5 * (h9[i] + l9[i])
            base = 0.5 * (h26[i] + l26[i])
            span_a = 0.5 * (conv + base)
            span_b = 0.5 * (h52[i] + l52[i])
            if which == 0:
                buf[i] = c[i] / conv - 1.0
            elif which == 1:
                buf[i] = c[i] / base - 1.0
            elif which == 2:
                buf[i] = c[i] / span_a - 1.0
            elif which == 3:
                buf[i] = c[i] / span_b - 1.0
            else:
                buf[i] = (span_a - span_b) / c[i]
        k = _put(out, rows, k, s, buf, lb)  # ichimoku_conv_dist, ichimoku_base_dist, ichimoku_a_dist, ichimoku_b_dist, ichimoku_cloud_rel
    for i in range(n):
        buf[i] = 100.0 * (25.0 - age_h[i]) / 25.0
    k = _put(out, rows, k, s, buf, lb)  # aroon_up_25
    for i in range(n):
        buf[i] = 100.0 * (25.0 - age_l[i]) / 25.0
    k = _put(out, rows, k, s, buf, lb)  # aroon_down_25
    vmp = np.zeros(n)
    vmm = np.zeros(n)
    for i in range(1, n):
        vmp[i] = abs(h[i] - l[i - 1])
        vmm[i] = abs(l[i] - h[i - 1])
    pvp = _prefix(vmp, 1)
    pvm = _prefix(vmm, 1)
    for p in (pvp, pvm):
        buf[:] = NAN
        for i in range(14, n):
            buf[i] = _ratio(_ws(p, i, 14), _ws(ptr1, i, 14), 1.0)
        k = _put(out, rows, k, s, buf, lb)  # vortex_pos_14, vortex_neg_14
    ea = _ema(c, 2.0 / 16.0, 0)
    eb = _ema(ea, 2.0 / 16.0, min(14, n))
    ec = _ema(eb, 2.0 / 16.0, min(28, n))
    buf[:] = NAN
    for i in range(29, n):
        buf[i] = (ec[i] - ec[i - 1]) / ec[i - 1] * 100.0
    k = _put(out, rows, k, s, buf, lb)  # trix_15
    amp = h - l
    m1 = _ema(amp, 0.2, 0)
    m2 = _ema(m1, 0.2, min(8, n))
    ratio = np.zeros(n)
    for i in range(16, n):
        ratio[i] = _ratio(m1[i], m2[i], 1.0)
    pm = _prefix(ratio, 16)
    buf[:] = NAN
    for i in range(40, n):
        buf[i] = _ws(pm, i, 25)
    k = _put(out, rows, k, s, buf, lb)  # mass_index
    buf[:] = NAN
    for i in range(19, n):
        buf[i] = (c[i - 11] - _ws(pc1, i, 20) / 20.0) / c[i]
    k = _put(out, rows, k, s, buf, lb)  # dpo_20_rel
    mx14 = _roll_max(c, n, 14)
    rr = np.zeros(n)
    for i in range(13, n):
        x = 100.0 * (c[i] - mx14[i]) / mx14[i]
        rr[i] = x * x
    prr = _prefix(rr, 13)
    buf[:] = NAN
    for i in range(26, n):
        buf[i] = math.sqrt(max(_ws(prr, i, 14), 0.0) / 14.0)
    k = _put(out, rows, k, s, buf, lb)  # ulcer_index_14
    return k


@njit
def _volume(h, l, c, v, r, lv, tp, diff, n, buf, out, rows, k, s, lb):
    """The ``volume`` block: volume flow and its dispersion."""
    pv1 = _prefix(v, 0)
    sv = np.zeros(n)
    for i in range(1, n):
        sv[i] = -v[i] if c[i] < c[i - 1] else v[i]
    psv = _prefix(sv, 1)
    pv1b = _prefix(v, 1)
    for w in (20, 60):
        buf[:] = NAN
        for i in range(w, n):
            buf[i] = _ratio(_ws(psv, i, w), _ws(pv1b, i, w), 0.0)
        k = _put(out, rows, k, s, buf, lb)  # obv_change_{20,60}
    mfv = np.empty(n)
    for i in range(n):
        mfv[i] = _ratio((c[i] - l[i]) - (h[i] - c[i]), h[i] - l[i], 0.0) * v[i]
    pmf = _prefix(mfv, 0)
    buf[:] = NAN
    for i in range(19, n):
        buf[i] = _ratio(_ws(pmf, i, 20), _ws(pv1, i, 20), 0.0)
    k = _put(out, rows, k, s, buf, lb)  # cmf_20
    fi = np.zeros(n)
    for i in range(1, n):
        fi[i] = diff[i] * v[i]
    efi = _ema(fi, 2.0 / 14.0, min(1, n))
    buf[:] = NAN
    for i in range(19, n):
        buf[i] = _ratio(efi[i], c[i] * _ws(pv1, i, 20) / 20.0, 0.0)
    k = _put(out, rows, k, s, buf, lb)  # force_index_13_rel
    ptv = _prefix(tp * v, 0)
    for w in (14, 60):
        buf[:] = NAN
        for i in range(w - 1, n):
            vw = _ws(pv1, i, w)
            buf[i] = 0.0 if vw == 0.0 else c[i] / (_ws(ptv, i, w) / vw) - 1.0
        k = _put(out, rows, k, s, buf, lb)  # vwap_dist_{14,60}
    pv2 = _prefix(v * v, 0)
    buf[:] = NAN
    for i in range(19, n):
        m = _ws(pv1, i, 20) / 20.0
        var = (_ws(pv2, i, 20) - 20.0 * m * m) / 19.0
        buf[i] = 0.0 if var <= _REL_FLAT * m * m else (v[i] - m) / math.sqrt(var)
    k = _put(out, rows, k, s, buf, lb)  # volume_z_20
    pcv = _prefix(c * v, 0)
    buf[:] = NAN
    for i in range(19, n):
        buf[i] = math.log1p(max(_ws(pcv, i, 20), 0.0) / 20.0)
    k = _put(out, rows, k, s, buf, lb)  # dollar_volume_log_20
    buf[:] = NAN
    for i in range(19, n):
        buf[i] = math.log1p(max(_ws(pv1, i, 5), 0.0) / 5.0) - math.log1p(max(_ws(pv1, i, 20), 0.0) / 20.0)
    k = _put(out, rows, k, s, buf, lb)  # volume_ma_ratio_5_20
    for w in WINDOWS:
        buf[:] = NAN
        for i in range(w - 1, n):
            buf[i] = math.log1p(max(_ws(pv1, i, w), 0.0) / w) - lv[i]
        k = _put(out, rows, k, s, buf, lb)  # vma_ratio_{5,10,20,30,60}
    for w in WINDOWS:
        buf[:] = NAN
        for i in range(w - 1, n):
            m = _ws(pv1, i, w) / w
            var = _ws(pv2, i, w) / w - m * m
            buf[i] = 0.0 if m <= 0.0 or var <= _REL_FLAT * m * m else math.sqrt(var) / m
        k = _put(out, rows, k, s, buf, lb)  # vstd_{5,10,20,30,60}
    wv = np.zeros(n)
    for i in range(1, n):
        wv[i] = abs(r[i]) * v[i]
    pwv = _prefix(wv, 1)
    pwv2 = _prefix(wv * wv, 1)
    for w in WINDOWS:
        buf[:] = NAN
        for i in range(w, n):
            m = _ws(pwv, i, w) / w
            var = _ws(pwv2, i, w) / w - m * m
            buf[i] = 0.0 if m <= 0.0 or var <= _REL_FLAT * m * m else math.sqrt(var) / m
        k = _put(out, rows, k, s, buf, lb)  # wvma_{5,10,20,30,60}
    vup = np.zeros(n)
    vabs = np.zeros(n)
    for i in range(1, n):
        dv = v[i] - v[i - 1]
        vup[i] = max(dv, 0.0)
        vabs[i] = abs(dv)
    pvu = _prefix(vup, 1)
    pva = _prefix(vabs, 1)
    for w in WINDOWS:
        buf[:] = NAN
        for i in range(w, n):
            buf[i] = _ratio(_ws(pvu, i, w), _ws(pva, i, w), 0.5)
        k = _put(out, rows, k, s, buf, lb)  # vsump_{5,10,20,30,60}
    return k


@njit
def _rolling(h, l, c, r, lv, diff, ad, pc1, pc2, pr1, pr2, n, buf, out, rows, k, s, lb):
    """The ``rolling`` block: Alpha158-style rolling statistics of close and volume."""
    for w in (5, 10, 20, 30, 60, 120, 250):
        buf[:] = NAN
        for i in range(w - 1, n):
            buf[i] = c[i] / (_ws(pc1, i, w) / w) - 1.0
        k = _put(out, rows, k, s, buf, lb)  # close_to_sma_{5,10,20,30,60,120,250}
    idx = np.arange(n).astype(np.float64)
    pjc = _prefix(idx * c, 0)
    plv = _prefix(lv, 0)
    plv2 = _prefix(lv * lv, 0)
    pclv = _prefix(c * lv, 0)
    dlv = np.zeros(n)
    for i in range(1, n):
        dlv[i] = lv[i] - lv[i - 1]
    pdl = _prefix(dlv, 1)
    pdl2 = _prefix(dlv * dlv, 1)
    prdl = _prefix(r * dlv, 1) if n > 1 else _prefix(np.zeros(n), 0)
    upd = np.zeros(n)
    gain = np.zeros(n)
    for i in range(1, n):
        upd[i] = 1.0 if r[i] > 0 else 0.0
        gain[i] = max(diff[i], 0.0)
    pup = _prefix(upd, 1)
    pgain = _prefix(gain, 1)
    pabs = _prefix(ad, 1)
    corr_pv = np.empty((5, n))
    cord = np.empty((5, n))
    for wi, w in enumerate(WINDOWS):
        corr_pv[wi] = _corr(pc1, plv, pc2, plv2, pclv, n, w, 0, True, True)
        cord[wi] = _corr(pr1, pdl, pr2, pdl2, prdl, n, w, 1, False, False)
    for w in WINDOWS:
        buf[:] = NAN
        sd = _std_pop(pc1, pc2, n, w, 0, True)
        for i in range(w - 1, n):
            buf[i] = sd[i] / c[i]
        k = _put(out, rows, k, s, buf, lb)  # std_{5,10,20,30,60}
    st = 0.0
    stt = 0.0
    reg = _nan(15 * n).reshape((15, n))  # slope_w, rsqr_w, resid_w for the 5 windows, one pass each
    for wi, w in enumerate(WINDOWS):
        st = w * (w - 1) / 2.0
        stt = (w - 1) * w * (2.0 * w - 1) / 6.0
        vt = stt / w - (st / w) ** 2
        for i in range(w - 1, n):
            sy = _ws(pc1, i, w)
            sty = _ws(pjc, i, w) - (i - w + 1) * sy
            syy = _ws(pc2, i, w)
            my = sy / w
            cov = sty / w - (st / w) * my
            vy = syy / w - my * my
            slope = cov / vt
            reg[wi, i] = slope / c[i]
            reg[5 + wi, i] = 0.0 if vy <= _REL_FLAT * my * my else min(1.0, cov * cov / (vt * vy))
            reg[10 + wi, i] = (c[i] - (my + slope * ((w - 1) - st / w))) / c[i]
    for q in range(15):
        k = _put(out, rows, k, s, reg[q], lb)  # slope_{5,10,20,30,60}, rsqr_{5,10,20,30,60}, resid_{5,10,20,30,60}
    hv = np.empty((5, n))
    ha = np.empty((5, n))
    lw = np.empty((5, n))
    la = np.empty((5, n))
    for wi, w in enumerate(WINDOWS):
        hv[wi], ha[wi] = _extreme(h, n, w, 1.0)
        lw[wi], la[wi] = _extreme(l, n, w, -1.0)
    for wi in range(5):
        for i in range(n):
            buf[i] = hv[wi, i] / c[i] - 1.0
        k = _put(out, rows, k, s, buf, lb)  # max_{5,10,20,30,60}
    for wi in range(5):
        for i in range(n):
            buf[i] = lw[wi, i] / c[i] - 1.0
        k = _put(out, rows, k, s, buf, lb)  # min_{5,10,20,30,60}
    for wi in range(5):
        for i in range(n):
            buf[i] = _ratio(c[i] - lw[wi, i], hv[wi, i] - lw[wi, i], 0.5)
        k = _put(out, rows, k, s, buf, lb)  # range_pos_{5,10,20,30,60}
    # rank_w for every window in one backward scan of at most 60 rows per row.
    ranks = _nan(5 * n).reshape((5, n))
    wins = np.array(WINDOWS)
    for i in range(n):
        cnt = 0
        back = 0
        for wi in range(5):
            w = wins[wi]
            stop = min(w, i + 1)
            while back < stop:
                cnt += c[i - back] <= c[i]
                back += 1
            if i >= w - 1:
                ranks[wi, i] = cnt / w
    for wi in range(5):
        k = _put(out, rows, k, s, ranks[wi], lb)  # rank_{5,10,20,30,60}
    for wi, w in enumerate(WINDOWS):
        for i in range(n):
            buf[i] = ha[wi, i] / w
        k = _put(out, rows, k, s, buf, lb)  # imax_{5,10,20,30,60}
    for wi, w in enumerate(WINDOWS):
        for i in range(n):
            buf[i] = la[wi, i] / w
        k = _put(out, rows, k, s, buf, lb)  # imin_{5,10,20,30,60}
    for wi in range(5):
        k = _put(out, rows, k, s, corr_pv[wi], lb)  # corr_pv_{5,10,20,30,60}
    for wi in range(5):
        k = _put(out, rows, k, s, cord[wi], lb)  # cord_{5,10,20,30,60}
    for w in WINDOWS:
        buf[:] = NAN
        for i in range(w, n):
            buf[i] = _ws(pup, i, w) / w
        k = _put(out, rows, k, s, buf, lb)  # up_share_{5,10,20,30,60}
    for w in WINDOWS:
        buf[:] = NAN
        for i in range(w, n):
            buf[i] = _ratio(_ws(pgain, i, w), _ws(pabs, i, w), 0.5)
        k = _put(out, rows, k, s, buf, lb)  # sump_{5,10,20,30,60}
    return k


@njit
def _beta(c, r, sc, has_market, n, buf, out, rows, k, s, lb):
    """The ``beta`` block: the stock against the S&P 500 over the same intervals."""
    if not has_market:
        buf[:] = NAN
        for _ in range(6):
            k = _put(out, rows, k, s, buf, lb)  # (no market: the whole block is NaN)
        return k
    # S&P return over the same interval as the stock's own daily return (previous row -> row).
    mr = _nan(n)
    ok = np.zeros(n)
    for i in range(1, n):
        x = sc[i] / sc[i - 1] - 1.0
        if not math.isnan(x):
            mr[i] = x
            ok[i] = 1.0
    mr0 = np.where(ok > 0, mr, 0.0)
    rr0 = np.where(ok > 0, r, 0.0)
    pok = _prefix(ok, 0)
    pm1 = _prefix(mr0, 0)
    pm2 = _prefix(mr0 * mr0, 0)
    pa1 = _prefix(rr0, 0)
    pa2 = _prefix(rr0 * rr0, 0)
    pam = _prefix(rr0 * mr0, 0)
    for which in range(5):  # beta_20, beta_60, corr_20, corr_60, idio_vol_60
        w = (20, 60, 20, 60, 60)[which]
        buf[:] = NAN
        for i in range(w, n):
            if _ws(pok, i, w) < w - 0.5:
                continue  # a market gap inside the window: no value
            ma = _ws(pa1, i, w) / w
            mm = _ws(pm1, i, w) / w
            va = _ws(pa2, i, w) / w - ma * ma
            vm = _ws(pm2, i, w) / w - mm * mm
            cov = _ws(pam, i, w) / w - ma * mm
            if which < 2:
                buf[i] = 0.0 if vm <= _ABS_FLAT else cov / vm
            elif which < 4:
                buf[i] = 0.0 if vm <= _ABS_FLAT or va <= _ABS_FLAT else min(1.0, max(-1.0, cov / math.sqrt(va * vm)))
            else:
                resid = va - (0.0 if vm <= _ABS_FLAT else cov * cov / vm)
                buf[i] = math.sqrt(max(resid, 0.0))
        k = _put(out, rows, k, s, buf, lb)  # beta_spx_20, beta_spx_60, corr_spx_20, corr_spx_60, idio_vol_60
    buf[:] = NAN
    for i in range(20, n):
        buf[i] = (c[i] / c[i - 20]) - (sc[i] / sc[i - 20])
    k = _put(out, rows, k, s, buf, lb)  # excess_ret_20
    return k


# ------------------------------------------------------------------------------------ the kernels
#
# One standalone kernel per per-ticker family (``TICKER_KERNELS``, registry order): ``ticker_<family>``
# runs its family for the ticker segments ``starts[t]:starts[t + 1]``, t0 <= t < t1, from feature
# ``k0`` on (``out[rows[k]]`` gets feature k, none if -1), and sets ``written[t, f]`` (f: the family's
# index) to the number of features it wrote. All take the same arguments; they release the GIL, and
# the engine runs (family, tickers) tasks on a thread pool. The shared series are recomputed in each
# family that reads them, by the same arithmetic.

# The per-ticker families in registry order (``registry.PER_TICKER_FAMILIES``).
N_FAMILIES = 8


@njit(cache=True, nogil=True)
def ticker_returns(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        written[t, 0] = _returns(o[a:b], c[a:b], n, _nan(n), out, rows, k0, a, lb) - k0


@njit(cache=True, nogil=True)
def ticker_candle(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        written[t, 1] = _candle(o[a:b], h[a:b], l[a:b], c[a:b], n, _nan(n), out, rows, k0, a, lb) - k0


@njit(cache=True, nogil=True)
def ticker_volatility(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        ht, lt, ct = h[a:b], l[a:b], c[a:b]
        r = _daily_returns(ct)
        r2 = _squared(r)
        tr = _true_range(ht, lt, ct, n)
        pr1 = _prefix(r, 1)
        pr2 = _prefix(r2, 1)
        pc1 = _prefix(ct, 0)
        pc2 = _prefix(ct * ct, 0)
        written[t, 2] = _volatility(o[a:b], ht, lt, ct, r, r2, tr, pr1, pr2, pc1, pc2, n, _nan(n), out, rows, k0, a, lb) - k0


@njit(cache=True, nogil=True)
def ticker_momentum(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        ht, lt, ct = h[a:b], l[a:b], c[a:b]
        tp = (ht + lt + ct) / 3.0  # typical price
        diff = _close_change(ct)
        ad = np.abs(diff)
        ptr1 = _prefix(_true_range(ht, lt, ct, n), 1)
        written[t, 3] = _momentum(ht, lt, ct, v[a:b], tp, diff, ad, ptr1, n, _nan(n), out, rows, k0, a, lb) - k0


@njit(cache=True, nogil=True)
def ticker_trend(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        ht, lt, ct = h[a:b], l[a:b], c[a:b]
        tr = _true_range(ht, lt, ct, n)
        ptr1 = _prefix(tr, 1)
        pc1 = _prefix(ct, 0)
        written[t, 4] = _trend(ht, lt, ct, tr, ptr1, pc1, n, _nan(n), out, rows, k0, a, lb) - k0


@njit(cache=True, nogil=True)
def ticker_volume(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        ht, lt, ct, vt = h[a:b], l[a:b], c[a:b], v[a:b]
        r = _daily_returns(ct)
        lv = np.log1p(vt)
        tp = (ht + lt + ct) / 3.0  # typical price
        diff = _close_change(ct)
        written[t, 5] = _volume(ht, lt, ct, vt, r, lv, tp, diff, n, _nan(n), out, rows, k0, a, lb) - k0


@njit(cache=True, nogil=True)
def ticker_rolling(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        ht, lt, ct = h[a:b], l[a:b], c[a:b]
        r = _daily_returns(ct)
        lv = np.log1p(v[a:b])
        diff = _close_change(ct)
        ad = np.abs(diff)
        pc1 = _prefix(ct, 0)
        pc2 = _prefix(ct * ct, 0)
        pr1 = _prefix(r, 1)
        pr2 = _prefix(_squared(r), 1)
        written[t, 6] = _rolling(ht, lt, ct, r, lv, diff, ad, pc1, pc2, pr1, pr2, n, _nan(n), out, rows, k0, a, lb) - k0


@njit(cache=True, nogil=True)
def ticker_beta(o, h, l, c, v, sc, has_market, starts, t0, t1, lb, rows, out, k0, written):
    for t in range(t0, t1):
        a = starts[t]
        b = starts[t + 1]
        n = b - a
        ct = c[a:b]
        written[t, 7] = _beta(ct, _daily_returns(ct), sc[a:b], has_market, n, _nan(n), out, rows, k0, a, lb) - k0


TICKER_KERNELS = (ticker_returns, ticker_candle, ticker_volatility, ticker_momentum, ticker_trend, ticker_volume, ticker_rolling, ticker_beta)


# -------------------------------------------------------------------------------- cross-section


@njit
def _radix_order(vals, order, key, tmp_key, tmp_pos, count):
    """``order[:m]`` <- positions of ``vals`` ascending, NaN last, ties by position (a stable LSD radix
    sort of order-preserving 32-bit keys of the float32 values: 4 passes of 8 bits, a pass skipped when
    every key shares its byte)."""
    m = vals.shape[0]
    for q in range(m):
        x = vals[q]
        if math.isnan(x):
            key[q] = np.uint32(0xFFFFFFFF)
        else:
            b = np.float32(x).view(np.uint32)
            key[q] = b ^ np.uint32(0xFFFFFFFF) if b >> np.uint32(31) else b | np.uint32(0x80000000)
        order[q] = q
    for shift in range(0, 32, 8):
        count[:] = 0
        for q in range(m):
            count[(key[q] >> np.uint32(shift)) & np.uint32(0xFF)] += 1
        if count[(key[0] >> np.uint32(shift)) & np.uint32(0xFF)] == m:
            continue  # every key has this byte: the pass would not move anything
        acc = 0
        for b in range(256):
            c = count[b]
            count[b] = acc
            acc += c
        for q in range(m):
            b = (key[q] >> np.uint32(shift)) & np.uint32(0xFF)
            j = count[b]
            count[b] = j + 1
            tmp_key[j] = key[q]
            tmp_pos[j] = order[q]
        for q in range(m):
            key[q] = tmp_key[q]
            order[q] = tmp_pos[q]


@njit
def _avg_pct_rank(vals, order, sec, by_sector, n_sectors, res, total, done, tie):
    """Percentile rank (average rank of ties / count) of the finite values, in the whole day or per sector.

    ``order`` is ``_radix_order``'s; NaN values, and with ``by_sector`` rows of unknown sector (code -1),
    get NaN. ``total``, ``done``, ``tie`` are scratch arrays of at least ``n_sectors`` (and 1) entries.
    """
    m = vals.shape[0]
    valid = 0
    for q in range(m):
        if not math.isnan(vals[q]):
            valid += 1
    groups = n_sectors if by_sector else 1
    total[:groups] = 0.0
    done[:groups] = 0.0
    tie[:groups] = 0.0
    for q in range(valid):
        g = sec[order[q]] if by_sector else 0
        if g >= 0:
            total[g] += 1.0
    for q in range(m):
        res[q] = NAN
    i = 0
    while i < valid:
        j = i
        while j + 1 < valid and vals[order[j + 1]] == vals[order[i]]:
            j += 1
        for q in range(i, j + 1):
            g = sec[order[q]] if by_sector else 0
            if g >= 0:
                tie[g] += 1.0
        for q in range(i, j + 1):
            g = sec[order[q]] if by_sector else 0
            if g >= 0:
                res[order[q]] = (done[g] + (tie[g] + 1.0) / 2.0) / total[g]
        for q in range(i, j + 1):
            g = sec[order[q]] if by_sector else 0
            if g >= 0:
                done[g] += tie[g]
                tie[g] = 0.0
        i = j + 1


RANK, ZSCORE, SECTOR_DIFF, SECTOR_RATIO, SECTOR_RANK = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def cross_section(out, src_rows, kinds, dst_rows, date_order, date_starts, sector, n_sectors, d0, d1):
    """Per-date features of the dates d0 <= d < d1: ``out[dst_rows[q]] = kinds[q](out[src_rows[q]])`` over each date's rows.

    ``date_order[date_starts[d]:date_starts[d + 1]]`` are the rows of date d. Sector statistics use
    ``sector`` codes (-1: unknown -> NaN). Everything reads same-date values only. Consecutive specs
    with the same source share one gather of the values and one sort. It releases the GIL: the engine
    runs ranges of dates on a thread pool, each call with its own scratch buffers.
    """
    n_specs = src_rows.shape[0]
    slot = np.zeros(n_specs, dtype=np.int64)  # one sort per distinct source, shared by its rank kinds
    for q in range(1, n_specs):
        slot[q] = slot[q - 1] + (1 if src_rows[q] != src_rows[q - 1] else 0)
    n_slots = slot[n_specs - 1] + 1 if n_specs else 0
    m_max = 0
    for d in range(d0, d1):
        m_max = max(m_max, date_starts[d + 1] - date_starts[d])
    g_max = max(n_sectors, 1)
    orders = np.empty((max(n_slots, 1), m_max), dtype=np.int64)
    key = np.empty(m_max, dtype=np.uint32)
    tmp_key = np.empty(m_max, dtype=np.uint32)
    tmp_pos = np.empty(m_max, dtype=np.int64)
    count = np.zeros(256, dtype=np.int64)
    sec = np.empty(m_max, dtype=np.int64)
    vals = np.empty(m_max)
    res = np.empty(m_max, dtype=np.float32)
    sums = np.zeros(g_max)
    cnts = np.zeros(g_max)
    total = np.zeros(g_max)
    done = np.zeros(g_max)
    tie = np.zeros(g_max)
    for d in range(d0, d1):
        a = date_starts[d]
        m = date_starts[d + 1] - a
        rows = date_order[a : a + m]
        for t in range(m):
            sec[t] = sector[rows[t]]
        fresh = True
        for q in range(n_specs):
            sl = slot[q]
            if q == 0 or sl != slot[q - 1]:
                src = out[src_rows[q]]
                for t in range(m):
                    vals[t] = src[rows[t]]
                fresh = True
            kind = kinds[q]
            if kind == RANK or kind == SECTOR_RANK:
                if fresh:
                    _radix_order(vals[:m], orders[sl, :m], key, tmp_key, tmp_pos, count)
                    fresh = False
                _avg_pct_rank(vals[:m], orders[sl, :m], sec[:m], kind == SECTOR_RANK, n_sectors, res, total, done, tie)
            elif kind == ZSCORE:
                cnt = 0
                s1 = 0.0
                for t in range(m):
                    if not math.isnan(vals[t]):
                        cnt += 1
                        s1 += vals[t]
                mean = s1 / cnt if cnt else NAN
                s2 = 0.0
                for t in range(m):
                    if not math.isnan(vals[t]):
                        s2 += (vals[t] - mean) ** 2
                sd = math.sqrt(s2 / cnt) if cnt else NAN
                for t in range(m):
                    if math.isnan(vals[t]):
                        res[t] = NAN
                    else:
                        res[t] = 0.0 if sd <= 1e-12 else (vals[t] - mean) / sd
            else:
                sums[:] = 0.0
                cnts[:] = 0.0
                for t in range(m):
                    g = sec[t]
                    if g >= 0 and not math.isnan(vals[t]):
                        sums[g] += vals[t]
                        cnts[g] += 1.0
                for t in range(m):
                    g = sec[t]
                    if g < 0 or math.isnan(vals[t]):
                        res[t] = NAN
                    elif kind == SECTOR_RATIO:
                        mean = sums[g] / cnts[g]
                        res[t] = 0.0 if mean == 0.0 else vals[t] / mean - 1.0
                    else:
                        res[t] = vals[t] - sums[g] / cnts[g]
            dst = out[dst_rows[q]]
            for t in range(m):
                dst[rows[t]] = res[t]


@njit(cache=True, nogil=True)
def scatter_rows(out, first, table, codes, f0, f1):
    """out[first + f, i] = table[codes[i], f] for f0 <= f < f1: per-date values (market features) onto stock rows."""
    n = codes.shape[0]
    for f in range(f0, f1):
        for i in range(n):
            out[first + f, i] = table[codes[i], f]


@njit(cache=True)
def group_rows(codes, n_groups):
    """Counting sort of row numbers by group code: (order, starts) with group g = order[starts[g]:starts[g+1]]."""
    counts = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(codes.shape[0]):
        counts[codes[i] + 1] += 1
    starts = np.cumsum(counts)
    fill = starts[:-1].copy()
    order = np.empty(codes.shape[0], dtype=np.int64)
    for i in range(codes.shape[0]):
        g = codes[i]
        order[fill[g]] = i
        fill[g] += 1
    return order, starts
