//! File IO of the CLI: reading sources and containers, writing outputs
//! atomically, and the `asm` and `disasm` subcommands.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tessera_isa::asm::assemble;
use tessera_isa::disasm::disassemble;
use tessera_isa::program::MAGIC;
use tessera_isa::{Arch, Program};

use crate::hw;

/// The path as shown in messages.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Writes `text` to stdout. A closed pipe (`tessera disasm x.tsr | head`)
/// ends the output quietly instead of failing.
pub fn print(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(anyhow!("writing stdout: {e}")),
        _ => Ok(()),
    }
}

/// Reads a UTF-8 text file.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).with_context(|| shown(path))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            shown(path),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Assembles a source file; errors carry `file:line:column`.
pub fn assemble_file(path: &Path, hw: Option<&Arch>) -> Result<Program> {
    let src = read_text(path)?;
    assemble(&src, &shown(path), hw).map_err(|e| anyhow!("{e}"))
}

/// Reads and structurally validates a `.tsr` container.
pub fn read_container(path: &Path) -> Result<Program> {
    let bytes = fs::read(path).with_context(|| shown(path))?;
    let p = Program::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", shown(path)))?;
    if let Err(errors) = p.validate() {
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        bail!("{}: invalid program: {}{more}", shown(path), errors[0]);
    }
    Ok(p)
}

/// Loads a program from a `.tsr` container or `.s` assembly. A container
/// must have been built for `hw` when one is given; assembly is assembled for it.
pub fn load_program(path: &Path, hw: Option<&Arch>) -> Result<Program> {
    if !is_container(path) {
        return assemble_file(path, hw);
    }
    let p = read_container(path)?;
    if let Some(a) = hw {
        if *a != p.arch {
            bail!(
                "{}: built for hardware `{}` (fingerprint {:016x}), but --hw names `{}` (fingerprint {:016x}); reassemble it with that --hw",
                shown(path),
                p.arch.name(),
                p.arch.fingerprint(),
                a.name(),
                a.fingerprint()
            );
        }
    }
    Ok(p)
}

/// Whether a path names a container: extension `.tsr`, or a file that
/// starts with the container magic.
pub fn is_container(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "tsr") {
        return true;
    }
    if path.extension().is_some_and(|e| e == "s" || e == "asm") {
        return false;
    }
    let mut head = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head == MAGIC)
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same
/// directory, then renamed over `path`. On any failure the temporary file is
/// removed and `path` is left as it was.
///
/// A `path` that exists and is not a regular file (`/dev/null`, `/dev/stdout`,
/// a named pipe) is written in place: renaming over it would replace the
/// device node with a plain file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| anyhow!("{}: {e}", shown(path)));
    }
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", shown(path)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pid = std::process::id();
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{}.{pid}.{attempt}.tmp", name.to_string_lossy()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(anyhow!("{}: {e}", shown(path))),
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        bail!("{}: {e}", shown(path));
    }
    Ok(())
}

/// `tessera asm`.
pub fn asm(input: &Path, output: Option<&Path>, hw_arg: Option<&str>) -> Result<()> {
    let arch = hw_arg.map(hw::load).transpose()?;
    let out = match output {
        Some(o) => o.to_path_buf(),
        None => input.with_extension("tsr"),
    };
    if out == input {
        bail!(
            "{}: the output would overwrite the input; pass -o FILE.tsr",
            shown(input)
        );
    }
    let program = assemble_file(input, arch.as_ref())?;
    write_atomic(&out, &program.to_bytes())
}

/// `tessera disasm`.
pub fn disasm(input: &Path, output: Option<&Path>) -> Result<()> {
    let program = read_container(input)?;
    let text = disassemble(&program);
    match output {
        Some(o) => write_atomic(o, text.as_bytes()),
        None => print(&text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_a_regular_file_whole() {
        let dir = std::env::temp_dir().join(format!("tessera-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.bin");
        fs::write(&path, b"old contents, longer than the new").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_to_a_device_leaves_the_device_in_place() {
        use std::os::unix::fs::FileTypeExt as _;
        let null = Path::new("/dev/null");
        if !fs::metadata(null).is_ok_and(|m| m.file_type().is_char_device()) {
            return; // nothing to protect on this machine
        }
        write_atomic(null, b"discarded").unwrap();
        assert!(fs::metadata(null).unwrap().file_type().is_char_device());
    }
}
