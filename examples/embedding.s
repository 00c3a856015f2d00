; embedding.s: GPT-2's token + position embedding, forward and backward, on
; the `default` preset, for a sequence of 64 tokens, hidden size 256 and a
; 1024-row vocabulary (all fp32).
;
;   forward   H[i, :]          = WTE[ids[i], :] + WPE[i, :]
;   backward  dWTE[ids[i], :] += dH[i, :]          for i = 0, 1, ... in order
;
; `dma.gather` (load queue) copies table rows picked by int32 indices that
; are already in the scratchpad; `dma.scatter_add` (store queue) adds fp32
; rows into HBM rows picked the same way, in ascending i, so repeated token
; ids accumulate deterministically. Both take the HBM row stride from
; `dma.hstride` and the on-chip row stride from `dma.lstride`.
;
; Tokens (one producer queue, one consumer queue each):
;
;   t0  load   -> vector   gathered rows and WPE rows are in the scratchpad
;   t1  load   -> store    the ids and dH are in the scratchpad
;   t2  vector -> store    H is ready
;
; No loops and no buffer reuse, so no "buffer free" tokens are needed.

.arch default

.equ S, 64                  ; tokens
.equ ROW_BYTES, 1024        ; one fp32 row of 256 elements

.hbm IDS_H, 0x000000, 256       ; 64 int32 token ids
.hbm WTE,   0x010000, 1048576   ; 1024 x 256 fp32 token embedding
.hbm WPE,   0x110000, 65536     ; 64 x 256 fp32 position embedding (first S rows)
.hbm DH_H,  0x120000, 65536     ; 64 x 256 fp32 gradient of H
.hbm H_H,   0x130000, 65536     ; 64 x 256 fp32 output
.hbm DWTE,  0x140000, 1048576   ; 1024 x 256 fp32 gradient of WTE

.spad IDS,  0x00000, 256
.spad TOK,  0x01000, 65536      ; gathered WTE rows, then H
.spad POS,  0x11000, 65536      ; WPE rows
.spad DH,   0x21000, 65536      ; dH rows

; ---------------------------------------------------------------- load queue
.queue load
    dma.hstride row=ROW_BYTES, plane=0  ; table rows are 1024 bytes apart
    dma.lstride row=0, plane=0          ; on-chip rows packed
    addr.set r1, IDS_H
    addr.set r2, IDS
    dma.load dst=spad[r2], src=hbm[r1], rows=1, row_bytes=256, planes=1, transpose=none
    ; The queue is in order, so the gather sees the ids just loaded.
    addr.set r1, WTE
    addr.set r3, TOK
    dma.gather dst=spad[r3], table=hbm[r1], idx=spad[r2], rows=S, row_bytes=ROW_BYTES
    addr.set r1, WPE
    addr.set r3, POS
    dma.load dst=spad[r3], src=hbm[r1], rows=S, row_bytes=ROW_BYTES, planes=1, transpose=none, signal=t0
    addr.set r1, DH_H
    addr.set r3, DH
    dma.load dst=spad[r3], src=hbm[r1], rows=S, row_bytes=ROW_BYTES, planes=1, transpose=none, signal=t1
    halt

; -------------------------------------------------------------- vector queue
.queue vector
    v.shape rows=S, cols=256
    v.stride d=0, a=0, b=0, m=0
    addr.set r1, TOK
    addr.set r2, POS
    v.bin op=add, dst=spad[r1]:fp32, a=spad[r1]:fp32, b=spad[r2]:fp32, wait=t0, signal=t2
    halt

; --------------------------------------------------------------- store queue
.queue store
    dma.hstride row=ROW_BYTES, plane=0
    dma.lstride row=0, plane=0
    addr.set r1, H_H
    addr.set r2, TOK
    dma.store dst=hbm[r1], src=spad[r2], rows=S, row_bytes=ROW_BYTES, planes=1, transpose=none, wait=t2
    addr.set r1, DWTE
    addr.set r2, DH
    addr.set r3, IDS
    dma.scatter_add table=hbm[r1], src=spad[r2], idx=spad[r3], rows=S, row_bytes=ROW_BYTES, wait=t1
    halt
