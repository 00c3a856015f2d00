; layernorm.s: Y = LayerNorm(X) * gamma + beta over the rows of X[128, 768]
; (GPT-2's hidden size), bf16 in and out, fp32 inside, on the `default` preset.
;
;   mean_i = sum_j X_ij / D
;   var_i  = sum_j (X_ij - mean_i)^2 / D
;   Y_ij   = (X_ij - mean_i) * rsqrt(var_i + eps) * gamma_j + beta_j
;
; The vector unit does all the arithmetic. It works on rows x cols tiles set
; by `v.shape`; `v.reduce ... axis=rows` folds each row into one element (a
; column vector), and the second source of `v.bin` can broadcast a column
; (`col(...)`: one value per row) or a row (`row(...)`: one value per
; column) or a scalar register (`f0`..`f7`). Operands name their element type;
; arithmetic is fp32 and results are rounded to the destination's type.
;
; X is processed in 4 blocks of 32 rows. Tokens (one producer queue, one
; consumer queue each; the k-th wait pairs with the k-th signal):
;
;   t0  load   -> vector   gamma and beta are in the scratchpad
;   t1  load   -> vector   an X block is in the scratchpad
;   t2  vector -> load     the X buffer is free again
;   t3  vector -> store    a Y block is ready
;   t4  store  -> vector   the Y buffer is free again
;
; The matrix queue is empty: a queue with no instructions needs no `halt`.

.arch default

.equ ROWS, 32               ; rows per block
.equ ROW_BYTES, 1536        ; one bf16 row of 768 elements
.equ BLOCK_BYTES, 49152     ; one block: ROWS x ROW_BYTES

.hbm X,       0x00000, 196608   ; 128 x 768 bf16
.hbm GAMMA_H, 0x30000, 1536     ; 768 bf16
.hbm BETA_H,  0x30600, 1536     ; 768 bf16
.hbm Y,       0x40000, 196608   ; 128 x 768 bf16

.spad GAMMA,  0x00000, 1536     ; 1 x 768 bf16
.spad BETA,   0x00600, 1536     ; 1 x 768 bf16
.spad X_BUF,  0x01000, 49152    ; 32 x 768 bf16
.spad XC,     0x0d000, 98304    ; 32 x 768 fp32: X - mean, then normalised
.spad MEAN,   0x25000, 128      ; 32 x 1 fp32
.spad RSTD,   0x25080, 128      ; 32 x 1 fp32: variance, then 1/sqrt(var + eps)
.spad Y_BUF,  0x26000, 49152    ; 32 x 768 bf16

; ---------------------------------------------------------------- load queue
.queue load
    dma.hstride row=0, plane=0          ; 0 = packed: rows follow each other
    dma.lstride row=0, plane=0
    addr.set r1, GAMMA_H
    addr.set r2, GAMMA
    dma.load dst=spad[r2], src=hbm[r1], rows=1, row_bytes=ROW_BYTES, planes=1, transpose=none
    addr.set r1, BETA_H                 ; registers can be reset at any time
    addr.set r2, BETA
    dma.load dst=spad[r2], src=hbm[r1], rows=1, row_bytes=ROW_BYTES, planes=1, transpose=none, signal=t0
    addr.set  r1, X                     ; block b of X: X + b * BLOCK_BYTES
    addr.step r1, 0, BLOCK_BYTES
    addr.set  r2, X_BUF
    loop 4, load_done
        dma.load dst=spad[r2], src=hbm[r1], rows=ROWS, row_bytes=ROW_BYTES, planes=1, transpose=none, wait=t2, signal=t1
load_done:
    nop wait=t2                         ; the buffer's last credit
    halt

; -------------------------------------------------------------- vector queue
.queue vector
    v.stride d=0, a=0, b=0, m=0         ; every operand packed
    v.fset f0, 0.0013020834             ; 1 / 768 (rounded to fp32)
    v.fset f1, 1e-5                     ; epsilon
    addr.set r1, X_BUF
    addr.set r2, XC
    addr.set r3, MEAN
    addr.set r4, RSTD
    addr.set r5, GAMMA
    addr.set r6, BETA
    addr.set r7, Y_BUF
    nop signal=t2                       ; the X buffer starts free
    nop wait=t0                         ; gamma and beta are needed in every block
    loop 4, v_done
        ; mean: sum each row (fp32, ascending column order), then scale
        v.shape rows=ROWS, cols=768
        v.reduce op=sum, axis=rows, dst=spad[r3]:fp32, a=spad[r1]:bf16, mode=overwrite, wait=t1
        v.shape rows=ROWS, cols=1
        v.bin op=mul, dst=spad[r3]:fp32, a=spad[r3]:fp32, b=f0
        ; centre: subtract each row's mean (a column broadcast). This is the
        ; last read of X, so the load queue may refill the buffer now.
        v.shape rows=ROWS, cols=768
        v.bin op=sub, dst=spad[r2]:fp32, a=spad[r1]:bf16, b=col(spad[r3]:fp32), signal=t2
        ; variance: mean of squares of the centred values
        v.reduce op=sumsq, axis=rows, dst=spad[r4]:fp32, a=spad[r2]:fp32, mode=overwrite
        v.shape rows=ROWS, cols=1
        v.bin op=mul, dst=spad[r4]:fp32, a=spad[r4]:fp32, b=f0
        v.bin op=add, dst=spad[r4]:fp32, a=spad[r4]:fp32, b=f1
        v.un op=rsqrt, dst=spad[r4]:fp32, a=spad[r4]:fp32
        ; normalise, scale by gamma, shift by beta (row broadcasts) and round
        ; to bf16 into the Y buffer once the store queue has emptied it
        v.shape rows=ROWS, cols=768
        v.bin op=mul, dst=spad[r2]:fp32, a=spad[r2]:fp32, b=col(spad[r4]:fp32)
        v.bin op=mul, dst=spad[r2]:fp32, a=spad[r2]:fp32, b=row(spad[r5]:bf16)
        v.bin op=add, dst=spad[r7]:bf16, a=spad[r2]:fp32, b=row(spad[r6]:bf16), wait=t4, signal=t3
v_done:
    nop wait=t4                         ; the Y buffer's last credit
    halt

; --------------------------------------------------------------- store queue
.queue store
    dma.hstride row=0, plane=0
    dma.lstride row=0, plane=0
    addr.set  r1, Y
    addr.step r1, 0, BLOCK_BYTES
    addr.set  r2, Y_BUF
    nop signal=t4                       ; the Y buffer starts free
    loop 4, st_done
        dma.store dst=hbm[r1], src=spad[r2], rows=ROWS, row_bytes=ROW_BYTES, planes=1, transpose=none, wait=t3, signal=t4
st_done:
    halt
