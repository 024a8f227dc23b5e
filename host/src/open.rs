//! Files the host reads that someone else names (a campaign's recipients, an adapter
//! component): opened once, without blocking, checked on the opened descriptor, and read
//! through a byte cap. A path is never checked and then opened again: what was checked is
//! what is read, whatever is swapped in at that path meanwhile.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// How a file is opened: read only, never blocking (a FIFO with no writer would block an
/// `open` for reading forever), not inherited by child processes.
fn flags(no_follow: bool) -> OFlags {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    if no_follow {
        flags | OFlags::NOFOLLOW
    } else {
        flags
    }
}

/// What a file that is not a regular file is, in words; `None` for a regular file.
pub(crate) fn not_regular(metadata: &Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a folder")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_symlink() {
        Some("a symbolic link")
    } else {
        Some("not a regular file")
    }
}

/// An error of kind `InvalidInput` saying what the opened file is, when it is not a regular file.
fn check_regular(file: File) -> io::Result<(File, Metadata)> {
    let metadata = file.metadata()?;
    match not_regular(&metadata) {
        None => Ok((file, metadata)),
        Some(what) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        )),
    }
}

fn opened(error: rustix::io::Errno) -> io::Error {
    if error == rustix::io::Errno::LOOP {
        // O_NOFOLLOW on a symbolic link.
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link: name the file itself",
        )
    } else {
        error.into()
    }
}

/// Opens `path` for reading once, without blocking and (with `no_follow`) without following a
/// symbolic link in its last component, and checks the opened file is a regular file.
pub(crate) fn open_regular(path: &Path, no_follow: bool) -> io::Result<(File, Metadata)> {
    let fd = rustix::fs::open(path, flags(no_follow), Mode::empty()).map_err(opened)?;
    check_regular(File::from(fd))
}

/// Opens `relative` (plain names only: no `..`, not absolute) beneath the folder `dir`, once,
/// following no symbolic link anywhere on the way, and checks the opened file is a regular
/// file. `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the kernel has it; otherwise
/// a walk of folder descriptors, each opened without following a link. (Only `serve` reads
/// files beneath a folder it is given.)
#[cfg(feature = "serve")]
pub(crate) fn open_beneath(dir: &Path, relative: &Path) -> io::Result<(File, Metadata)> {
    use rustix::fs::ResolveFlags;
    use std::path::Component;

    let mut names = Vec::new();
    for part in relative.components() {
        match part {
            Component::Normal(name) => names.push(name),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "name a file inside the folder, relative to it, without `..`",
                ));
            }
        }
    }
    let Some((last, folders)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file named"));
    };
    let base = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let plain: std::path::PathBuf = names.iter().collect();
    match rustix::fs::openat2(
        &base,
        plain.as_path(),
        flags(true),
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => return check_regular(File::from(fd)),
        // A symbolic link on the way.
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symbolic link is on the way: name the file itself",
            ));
        }
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {}
        Err(error) => return Err(error.into()),
    }
    // No openat2 (a kernel before 5.6, or a sandbox that forbids it): the same, by hand.
    let mut folder = base;
    for name in folders {
        folder = rustix::fs::openat(
            &folder,
            *name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|error| match error {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symbolic link or a file is on the way: name the file itself",
            ),
            other => other.into(),
        })?;
    }
    let fd = rustix::fs::openat(&folder, *last, flags(true), Mode::empty()).map_err(opened)?;
    check_regular(File::from(fd))
}

/// The path the opened `file` has now, as the kernel knows it (Linux's `/proc/self/fd`).
pub(crate) fn path_of(file: &File) -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    // A file deleted since it was opened reads as "… (deleted)": not a path.
    path.is_absolute().then_some(path).filter(|p| p.exists())
}

/// A reader that fails once more than `cap` bytes came through it.
pub(crate) struct Capped<R> {
    inner: std::io::Take<R>,
    cap: u64,
}

impl<R: Read> Capped<R> {
    pub(crate) fn new(inner: R, cap: u64) -> Capped<R> {
        Capped {
            inner: inner.take(cap.saturating_add(1)),
            cap,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.limit() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("it is larger than {} bytes", self.cap),
            ));
        }
        Ok(n)
    }
}

/// Reads the whole of `file` through a cap of `cap` bytes.
pub(crate) fn read_capped(file: File, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    Capped::new(file, cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_over_its_cap_fails_and_one_at_it_does_not() {
        let mut out = Vec::new();
        assert_eq!(
            Capped::new(&b"abcd"[..], 4).read_to_end(&mut out).unwrap(),
            4
        );
        let error = Capped::new(&b"abcde"[..], 4)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(error.to_string(), "it is larger than 4 bytes");
    }
}
