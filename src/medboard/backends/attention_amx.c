// Causal attention in bfloat16 on AMX tiles, for short prompts (medboard's scoring passes): the
// products of attention_core.h on 16 x 16 tiles.
//
// The tile state is saved and restored around the kernel for oneDNN's sake (amx.h).
#include <stdint.h>

#include "amx.h"

typedef tile_config kernel_state;
static void kernel_enter(kernel_state *saved) { amx_enter(saved); }
static void kernel_leave(const kernel_state *saved) { amx_leave(saved); }

// Scores of 16 queries (rows of qrows, qpitch bytes apart) against `count` (1 to 3) key blocks
// of packed K from kt, as the four-block loop computes each of them, stored to s (pitch: floats
// per row).
static void scores_tail(int64_t count, const uint16_t *qrows, int64_t qpitch, const uint16_t *kt,
                        int64_t kst, float *s, int64_t spitch) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    for (int64_t st = 0; st < kst; st++, kt += 512) {
        _tile_loadd(4, qrows + st * 32, qpitch);
        _tile_loadd(5, kt, 64);
        _tile_dpbf16ps(0, 4, 5);
        if (count > 1) {
            _tile_loadd(6, kt + kst * 512, 64);
            _tile_dpbf16ps(1, 4, 6);
        }
        if (count > 2) {
            _tile_loadd(7, kt + 2 * kst * 512, 64);
            _tile_dpbf16ps(2, 4, 7);
        }
    }
    _tile_stored(0, s, spitch * 4);
    if (count > 1) _tile_stored(1, s + 16, spitch * 4);
    if (count > 2) _tile_stored(2, s + 32, spitch * 4);
}

static void scores_rows(const uint16_t *qrows, int64_t qpitch, int64_t rows, const uint16_t *kp,
                        int64_t nkb, int64_t kst, float *s, int64_t spitch) {
    (void)rows;  // a tile holds all 16 rows
    // Four key blocks at a time: one query tile load feeds four independent products;
    // the last one to three blocks of a causal row alone (each score is its own sum).
    const int64_t nkb4 = nkb / 4 * 4;
    if (nkb4 < nkb) scores_tail(nkb - nkb4, qrows, qpitch, kp + nkb4 * kst * 512, kst,
                                s + nkb4 * 16, spitch);
    for (int64_t b = 0; b < nkb4; b += 4) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t st = 0; st < kst; st++) {
            const uint16_t *kt = kp + (b * kst + st) * 512;
            _tile_loadd(4, qrows + st * 32, qpitch);
            _tile_loadd(5, kt, 64);
            _tile_dpbf16ps(0, 4, 5);
            _tile_loadd(6, kt + kst * 512, 64);
            _tile_dpbf16ps(1, 4, 6);
            _tile_loadd(7, kt + 2 * kst * 512, 64);
            _tile_dpbf16ps(2, 4, 7);
            _tile_loadd(5, kt + 3 * kst * 512, 64);
            _tile_dpbf16ps(3, 4, 5);
        }
        _tile_stored(0, s + b * 16, spitch * 4);
        _tile_stored(1, s + b * 16 + 16, spitch * 4);
        _tile_stored(2, s + b * 16 + 32, spitch * 4);
        _tile_stored(3, s + b * 16 + 48, spitch * 4);
    }
}

static void values_rows(const uint16_t *p, int64_t t32, int64_t rows, const uint16_t *vp,
                        int64_t nts, int64_t db, int64_t c, float *obuf) {
    (void)rows;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    // V tiles in three registers in turn, so that a load need not wait for the
    // product that read the register before it.
    for (int64_t st = 0; st < nts; st++) {
        const uint16_t *vt = vp + (st * db + c * 4) * 512;
        _tile_loadd(5, p + st * 32, t32 * 2);
        _tile_loadd(6, vt, 64);
        _tile_loadd(7, vt + 512, 64);
        _tile_dpbf16ps(0, 5, 6);
        _tile_loadd(4, vt + 1024, 64);
        _tile_dpbf16ps(1, 5, 7);
        _tile_loadd(6, vt + 1536, 64);
        _tile_dpbf16ps(2, 5, 4);
        _tile_dpbf16ps(3, 5, 6);
    }
    _tile_stored(0, obuf, 256);
    _tile_stored(1, obuf + 16, 256);
    _tile_stored(2, obuf + 32, 256);
    _tile_stored(3, obuf + 48, 256);
}

#include "attention_core.h"
