//! The machine's byte-addressed memories: HBM (sparse, 64 KiB pages, zero
//! until written), and one core's scratchpad and accumulator.

use std::collections::BTreeMap;

use tessera_isa::program::MemSpace;
use tessera_isa::Arch;

const PAGE: u64 = 1 << 16;

/// An access outside a memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{space}[0x{addr:x}..0x{end:x}) is outside the {capacity} bytes of {space}")]
pub struct OutOfBounds {
    pub space: MemSpace,
    pub addr: u64,
    pub end: u128,
    pub capacity: u64,
}

/// HBM, scratchpad and accumulator of one core.
#[derive(Debug, Clone)]
pub struct Memory {
    hbm_capacity: u64,
    hbm: BTreeMap<u64, Box<[u8]>>,
    spad: Vec<u8>,
    acc: Vec<u8>,
}

impl Memory {
    /// Zeroed memories sized by `arch`.
    pub fn new(arch: &Arch) -> Memory {
        Memory {
            hbm_capacity: arch.hbm_bytes().get(),
            hbm: BTreeMap::new(),
            spad: vec![0; arch.scratchpad_bytes().get() as usize],
            acc: vec![0; arch.accumulator_bytes().get() as usize],
        }
    }

    /// Capacity of a space in bytes.
    pub fn capacity(&self, space: MemSpace) -> u64 {
        match space {
            MemSpace::Hbm => self.hbm_capacity,
            MemSpace::Spad => self.spad.len() as u64,
            MemSpace::Acc => self.acc.len() as u64,
        }
    }

    fn bounds(&self, space: MemSpace, addr: u64, len: usize) -> Result<(), OutOfBounds> {
        let end = u128::from(addr) + len as u128;
        let capacity = self.capacity(space);
        if end > u128::from(capacity) {
            return Err(OutOfBounds {
                space,
                addr,
                end,
                capacity,
            });
        }
        Ok(())
    }

    /// Copies `out.len()` bytes at `addr` into `out`.
    ///
    /// # Errors
    /// The range leaves the memory.
    pub fn read(&self, space: MemSpace, addr: u64, out: &mut [u8]) -> Result<(), OutOfBounds> {
        self.bounds(space, addr, out.len())?;
        match space {
            MemSpace::Spad => {
                out.copy_from_slice(&self.spad[addr as usize..addr as usize + out.len()])
            }
            MemSpace::Acc => {
                out.copy_from_slice(&self.acc[addr as usize..addr as usize + out.len()])
            }
            MemSpace::Hbm => {
                let mut done = 0usize;
                while done < out.len() {
                    let a = addr + done as u64;
                    let (page, off) = (a / PAGE, (a % PAGE) as usize);
                    let n = (PAGE as usize - off).min(out.len() - done);
                    match self.hbm.get(&page) {
                        Some(p) => out[done..done + n].copy_from_slice(&p[off..off + n]),
                        None => out[done..done + n].fill(0),
                    }
                    done += n;
                }
            }
        }
        Ok(())
    }

    /// Writes `data` at `addr`.
    ///
    /// # Errors
    /// The range leaves the memory.
    pub fn write(&mut self, space: MemSpace, addr: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        self.bounds(space, addr, data.len())?;
        match space {
            MemSpace::Spad => {
                self.spad[addr as usize..addr as usize + data.len()].copy_from_slice(data)
            }
            MemSpace::Acc => {
                self.acc[addr as usize..addr as usize + data.len()].copy_from_slice(data)
            }
            MemSpace::Hbm => {
                let mut done = 0usize;
                while done < data.len() {
                    let a = addr + done as u64;
                    let (page, off) = (a / PAGE, (a % PAGE) as usize);
                    let n = (PAGE as usize - off).min(data.len() - done);
                    let p = self
                        .hbm
                        .entry(page)
                        .or_insert_with(|| vec![0; PAGE as usize].into_boxed_slice());
                    p[off..off + n].copy_from_slice(&data[done..done + n]);
                    done += n;
                }
            }
        }
        Ok(())
    }

    /// `len` bytes at `addr`.
    ///
    /// # Errors
    /// The range leaves the memory.
    pub fn read_vec(&self, space: MemSpace, addr: u64, len: usize) -> Result<Vec<u8>, OutOfBounds> {
        let mut v = vec![0; len];
        self.read(space, addr, &mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hbm_pages_span_and_default_to_zero() {
        let mut m = Memory::new(&Arch::preset("fpga-8x8").unwrap());
        let data: Vec<u8> = (0..200u8).collect();
        m.write(MemSpace::Hbm, PAGE - 100, &data).unwrap();
        assert_eq!(m.read_vec(MemSpace::Hbm, PAGE - 100, 200).unwrap(), data);
        assert_eq!(m.read_vec(MemSpace::Hbm, 5 * PAGE, 4).unwrap(), vec![0; 4]);
        let cap = m.capacity(MemSpace::Spad);
        assert!(m.write(MemSpace::Spad, cap - 1, &[1, 2]).is_err());
    }
}
