// AMX tile state shared by medboard's AMX kernels (attention_amx.c, gated_mlp_amx.c).
//
// oneDNN keeps a tile configuration loaded on the threads it runs on (torch's OpenMP threads,
// which run these kernels too). Every thread stores the configuration it finds before loading
// its own (amx_enter) and loads it back afterwards (amx_leave), so oneDNN's next product sees
// the state it left.
#ifndef MEDBOARD_AMX_H
#define MEDBOARD_AMX_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

// Ask the kernel for the AMX tile data state (a no-op when oneDNN already did). 0: granted.
int mb_amx_init(void) { return (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); }

// Save the calling thread's tile configuration and load eight 16 x 64-byte tiles.
static inline void amx_enter(tile_config *saved) {
    tile_config mine;
    _tile_storeconfig(saved);
    memset(&mine, 0, sizeof mine);
    mine.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        mine.colsb[i] = 64;
        mine.rows[i] = 16;
    }
    _tile_loadconfig(&mine);
}

// Restore what amx_enter saved (or release the tiles when none were configured).
static inline void amx_leave(const tile_config *saved) {
    if (saved->palette_id)
        _tile_loadconfig(saved);
    else
        _tile_release();
}
#endif
