//! Files the platform writes for people to take away (audit exports, reports, barrel lists):
//! readable by their owner only, and never written through a symbolic link — a link planted
//! where an export goes would otherwise point the write at any file the service may change.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Owner read and write: exports hold buyers' names and the books.
const FILE_MODE: u32 = 0o600;
/// Owner only, for a directory created for an export.
const DIR_MODE: u32 = 0o700;

/// Creates or replaces `path` with `contents`, mode 0600; refuses when `path` is a symbolic
/// link (the open itself refuses, so no link can be slipped in between a check and the write).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = open_private(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Opens `path` for writing as [`write_private`] does, for a caller that streams into it.
pub fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link; refusing to write through it",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
    // An existing file keeps its mode through O_TRUNC: narrow it.
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Makes sure `dir` is a real directory to export into: created with mode 0700 when missing;
/// refused when it is a symbolic link or not a directory.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; give the directory itself",
                dir.display()
            ),
        )),
        Ok(meta) if !meta.is_dir() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("raffle-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn files_are_for_their_owner_and_links_are_refused() {
        let dir = scratch("links");
        private_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            DIR_MODE
        );
        let target = dir.join("victim");
        std::fs::write(&target, b"precious").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.join("entries.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let refused = write_private(&link, b"export").unwrap_err();
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");

        write_private(&target, b"replaced").unwrap();
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            FILE_MODE
        );
        let linked_dir = scratch("linked-dir");
        std::os::unix::fs::symlink(&dir, &linked_dir).unwrap();
        assert!(private_dir(&linked_dir).is_err());
        let _ = std::fs::remove_file(&linked_dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
