//! Links the plugin binaries statically against glibc (static-pie), like the
//! reference plugins are static Go binaries.
//!
//! Why: a CNI plugin lives for a few milliseconds and its max RSS is mostly
//! the pages the dynamic loader and the shared libraries map (ld.so, libc's
//! text faulted around in 64 KiB windows, libm, libgcc_s): ~1.5 MB of the
//! bridge plugin's 4.7 MB. Linked statically, only the libc objects we call
//! are in the binary, next to our code, and there is no symbol resolution at
//! start-up: bridge ADD drops to ~3.2 MB and every exec starts faster.
//!
//! How: `-C target-feature=+crt-static` cannot be set per package (and in
//! RUSTFLAGS it would also hit proc-macros and every other crate), so the bins
//! get `-static-pie` plus a search directory, searched before the system
//! ones, where each library rustc asks for (`-lc`, `-lgcc_s`, `-lm`, ...) is a
//! tiny linker script naming the static archive instead. Only the `bin`
//! targets are affected (tests and the library link as usual). Skipped, with
//! a warning, when cross-compiling, off glibc, when the static archives are
//! not installed (Debian: libc6-dev), or with `WEFT_CNI_DYNAMIC=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WEFT_CNI_DYNAMIC");
    println!("cargo:rerun-if-env-changed=CC");
    if std::env::var_os("WEFT_CNI_DYNAMIC").is_some_and(|v| v == "1") {
        return;
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !gnu_linux || target != host {
        return;
    }
    match shim_dir() {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bins=-static-pie");
            println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
        }
        Err(why) => println!("cargo:warning=CNI plugins linked dynamically: {why}"),
    }
}

/// Full path of a file the C compiler would link (`cc -print-file-name`).
fn archive(cc: &str, name: &str) -> Result<PathBuf, String> {
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .map_err(|e| format!("running {cc}: {e}"))?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if p.is_absolute() && p.exists() {
        Ok(p)
    } else {
        Err(format!("{name} not found by {cc}"))
    }
}

fn shim_dir() -> Result<PathBuf, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let dir = out.join("static-libs");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let libc = archive(&cc, "libc.a")?;
    let gcc_eh = archive(&cc, "libgcc_eh.a")?;
    let gcc = archive(&cc, "libgcc.a")?;
    let write = |lib: &str, body: String| -> Result<(), String> {
        std::fs::write(dir.join(format!("lib{lib}.so")), body).map_err(|e| e.to_string())
    };
    let p = |x: &Path| x.display().to_string();
    // libc and the unwinder resolve each other's symbols: one group.
    let group = format!("GROUP({} {} {})\n", p(&libc), p(&gcc_eh), p(&gcc));
    write("c", group.clone())?;
    write("gcc_s", group)?;
    for lib in ["m", "rt", "pthread", "dl", "util"] {
        let a = archive(&cc, &format!("lib{lib}.a"))?;
        write(lib, format!("INPUT({})\n", p(&a)))?;
    }
    Ok(dir)
}
