; tiled_matmul.s: C[M,N] = A[M,K] * B[K,N] in bf16 on the `default` preset.
;
; The machine has four in-order instruction queues that run concurrently:
;
;   load    DMA  HBM -> scratchpad        (A and B tiles)
;   matrix  the 128x128 systolic array    (scratchpad x scratchpad -> accumulator)
;   vector  the vector unit               (fp32 accumulator -> bf16 scratchpad)
;   store   DMA  scratchpad -> HBM        (C tiles)
;
; Queues never share registers; they coordinate only through 16 counting
; dependency tokens t0..t15. `signal=tN` adds one to tN when an instruction
; completes, `wait=tN` takes one before it starts (blocking at zero). Each
; token is a one-way channel from exactly one producer queue to exactly one
; consumer queue, so the k-th wait pairs with the k-th signal:
;
;   t0  load   -> matrix   an operand buffer (A and B tile of one k-step) is loaded
;   t1  matrix -> load     an operand buffer is free again (write-after-read)
;   t2  matrix -> vector   an accumulator tile holds a finished fp32 C tile
;   t3  vector -> matrix   an accumulator tile is free again
;   t4  vector -> store    a bf16 C tile is ready in the scratchpad
;   t5  store  -> vector   a bf16 staging buffer is free again
;
; Every buffer is doubled, so each producer runs one buffer ahead of its
; consumer. A "free" token starts with one credit per buffer (signalled by its
; producer before the loops) and the credits that come back at the very end
; are consumed by its waiting queue, so every token ends at zero: the
; checker (`tessera check`) insists on that balance.
;
; Sizes: M = K = N = 256 with 128x128 tiles, so 2 x 2 output tiles, each
; the sum of 2 k-steps. The k-steps are written out (k = 0 overwrites the
; accumulator, k = 1 adds to it), which is also what alternates the two
; operand buffers; larger K would repeat the accumulate step in a loop.
; The loops run over output tiles: m (nesting level 0) and n (level 1).

.arch default

; Tile geometry. The assembler evaluates + and - only, so products are
; written out.
.equ T, 128                 ; tile edge = array rows = array cols
.equ TILE_ROW, 256          ; bytes in one bf16 tile row (T x 2)
.equ A_ROW, 512             ; bytes in one row of A (K x 2)
.equ B_ROW, 512             ; bytes in one row of B (N x 2)
.equ C_ROW, 512             ; bytes in one row of C (N x 2)
.equ A_MSTEP, 65536         ; A: next block of T rows (T x A_ROW)
.equ A_KSTEP, 256           ; A: next block of T columns (T x 2)
.equ B_KSTEP, 65536         ; B: next block of T rows (T x B_ROW)
.equ B_NSTEP, 256           ; B: next block of T columns
.equ C_MSTEP, 65536         ; C: next block of T rows
.equ C_NSTEP, 256           ; C: next block of T columns
.equ ACC_TILE, 65536        ; one fp32 T x T accumulator tile
.equ C_TILE, 32768          ; one bf16 T x T scratchpad tile

; Data layout. `.hbm NAME, ADDRESS, SIZE` records a symbol in the program
; (host tools find the tensors by name); the symbol's value is its address.
.hbm A, 0x00000, 131072     ; 256 x 256 bf16, row-major
.hbm B, 0x20000, 131072     ; 256 x 256 bf16, row-major
.hbm C, 0x40000, 131072     ; 256 x 256 bf16, row-major

; Scratchpad: two operand buffers (an A tile and a B tile each) and two
; bf16 staging tiles for C. Accumulator: two fp32 output tiles.
.spad A_BUF0, 0x00000, 32768
.spad B_BUF0, 0x08000, 32768
.spad A_BUF1, 0x10000, 32768
.spad B_BUF1, 0x18000, 32768
.spad C_BUF0, 0x20000, 32768
.spad C_BUF1, 0x28000, 32768
.acc  ACC0,   0x00000, 65536
.acc  ACC1,   0x10000, 65536

; Profiling regions show up in the timing simulator's trace.
.region gemm

; ---------------------------------------------------------------- load queue
.queue load
    ; Address registers: address = base + sum(stride[level] * index[level])
    ; over the enclosing loops. r1 walks A's row blocks with m (level 0);
    ; r2 walks B's column blocks with n (level 1).
    addr.set  r1, A
    addr.step r1, 0, A_MSTEP
    addr.set  r2, B
    addr.step r2, 1, B_NSTEP
    addr.set  r3, A_BUF0
    addr.set  r4, B_BUF0
    addr.set  r5, A_BUF1
    addr.set  r6, B_BUF1
    dma.lstride row=0, plane=0                  ; on-chip tiles are packed
    loop 2, load_done                           ; m
    loop 2, load_done                           ; n
        ; k = 0 into buffer 0, once the matrix queue has freed it. The HBM
        ; row stride is queue state, set before each kind of tile.
        dma.hstride row=A_ROW, plane=0
        dma.load dst=spad[r3], src=hbm[r1], rows=T, row_bytes=TILE_ROW, planes=1, transpose=none, wait=t1
        dma.hstride row=B_ROW, plane=0
        dma.load dst=spad[r4], src=hbm[r2], rows=T, row_bytes=TILE_ROW, planes=1, transpose=none, signal=t0
        ; k = 1 into buffer 1: the next column block of A, row block of B.
        dma.hstride row=A_ROW, plane=0
        dma.load dst=spad[r5], src=hbm[r1+A_KSTEP], rows=T, row_bytes=TILE_ROW, planes=1, transpose=none, wait=t1
        dma.hstride row=B_ROW, plane=0
        dma.load dst=spad[r6], src=hbm[r2+B_KSTEP], rows=T, row_bytes=TILE_ROW, planes=1, transpose=none, signal=t0
load_done:
    nop wait=t1                                 ; both buffers come back free at the end:
    nop wait=t1                                 ; take those two last credits
    halt

; -------------------------------------------------------------- matrix queue
.queue matrix
    mm.stride a=0, b=0, c=0                     ; operands and results packed
    addr.set  r1, A_BUF0
    addr.set  r2, B_BUF0
    addr.set  r3, A_BUF1
    addr.set  r4, B_BUF1
    addr.set  r5, ACC0                          ; n picks the accumulator tile:
    addr.step r5, 1, ACC_TILE                   ; ACC0 for n = 0, ACC1 for n = 1
    nop signal=t1                               ; two operand buffers start free
    nop signal=t1
    prof.begin gemm
    loop 2, mm_done                             ; m
    loop 2, mm_done                             ; n
        ; k = 0: bind B (the weight-stationary operand), stream A through it
        ; and overwrite the accumulator tile, once the vector unit has
        ; drained that tile. The compute, not the preload, frees the buffer:
        ; B stays in use until the product is complete.
        mm.preload b=spad[r2]:bf16, k=T, n=T, transpose=false, wait=t0
        mm.compute a=spad[r1]:bf16, c=acc[r5]:fp32, m=T, transpose=false, mode=overwrite, wait=t3, signal=t1
        ; k = 1: add the second partial product; the C tile is then final.
        mm.preload b=spad[r4]:bf16, k=T, n=T, transpose=false, wait=t0
        mm.compute a=spad[r3]:bf16, c=acc[r5]:fp32, m=T, transpose=false, mode=accumulate, signal=t1|t2
mm_done:
    prof.end gemm
    nop wait=t3                                 ; both accumulator tiles come back
    nop wait=t3                                 ; free at the end
    halt

; -------------------------------------------------------------- vector queue
.queue vector
    v.shape rows=T, cols=T                      ; every vector op below is T x T
    v.stride d=0, a=0, b=0, m=0                 ; all packed
    addr.set  r1, ACC0
    addr.step r1, 1, ACC_TILE
    addr.set  r2, C_BUF0
    addr.step r2, 1, C_TILE
    nop signal=t3                               ; two accumulator tiles start free
    nop signal=t3
    loop 2, v_done                              ; m
    loop 2, v_done                              ; n
        ; Cast the fp32 accumulator tile to bf16 (copy between types rounds
        ; to nearest even). Needs a finished tile (t2) and a free staging
        ; buffer (t5); frees the accumulator tile (t3) and hands the bf16
        ; tile to the store queue (t4).
        v.un op=copy, dst=spad[r2]:bf16, a=acc[r1]:fp32, wait=t2|t5, signal=t3|t4
v_done:
    nop wait=t5                                 ; both staging buffers come back
    nop wait=t5                                 ; free at the end
    halt

; --------------------------------------------------------------- store queue
.queue store
    dma.hstride row=C_ROW, plane=0
    dma.lstride row=0, plane=0
    addr.set  r1, C
    addr.step r1, 0, C_MSTEP
    addr.step r1, 1, C_NSTEP
    addr.set  r2, C_BUF0
    addr.step r2, 1, C_TILE
    nop signal=t5                               ; two staging buffers start free
    nop signal=t5
    loop 2, st_done                             ; m
    loop 2, st_done                             ; n
        dma.store dst=hbm[r1], src=spad[r2], rows=T, row_bytes=TILE_ROW, planes=1, transpose=none, wait=t4, signal=t5
st_done:
    halt
