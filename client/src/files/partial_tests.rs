use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use punchline_core::files::{Hash, TreeBuilder, GROUP};
use punchline_core::wire::frame::files::FileAbort;

use super::*;

/// `len` bytes that differ from group to group.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i / GROUP) as u8)).collect()
}

fn root_of(bytes: &[u8]) -> Hash {
    let mut tree = TreeBuilder::new(bytes.len() as u64);
    tree.update(bytes);
    tree.finish().expect("fed the whole file").0
}

/// Writes every group of `bytes` into `p`.
fn write_all(p: &mut Partial, bytes: &[u8]) {
    for (i, group) in bytes.chunks(GROUP).enumerate() {
        p.write((i * GROUP) as u64, group).expect("written");
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .collect();
    names.sort();
    names
}

#[test]
fn partial_and_state_paths_stay_in_the_directory_whatever_the_root() {
    // Given any root (they come from the network), when its partial and
    // state are named, then both are plain names right inside DIR, made of
    // our prefix and hex digits only.
    let dir = Path::new("/srv/incoming");
    let roots: [Hash; 4] = [[0; 32], [0xff; 32], *b"../../etc/passwd\0/\\..\n\r:*?<>|CON", [0x2f; 32]];
    for root in roots {
        for path in [partial_path(dir, &root), state_path(dir, &root), state_tmp_path(dir, &root)] {
            assert_eq!(path.parent(), Some(dir), "{}", path.display());
            let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name");
            assert!(ours(name).is_some(), "{name}");
            assert!(name.starts_with(".punchline-") && !name.contains(['/', '\\']), "{name}");
            assert_eq!(path.components().count(), dir.components().count() + 1, "{}", path.display());
        }
    }
}

#[test]
fn numbered_names_keep_the_extension_and_the_length_limit() {
    assert_eq!(numbered("report.pdf", 0), "report.pdf");
    assert_eq!(numbered("report.pdf", 1), "report (1).pdf");
    assert_eq!(numbered("archive.tar.gz", 2), "archive.tar (2).gz");
    assert_eq!(numbered("notes", 3), "notes (3)");
    assert_eq!(numbered(".bashrc", 1), ".bashrc (1)");
    // A name at the limit, of two-byte characters: cut at a character
    // boundary, within 255 bytes.
    let long = format!("{}.txt", "é".repeat(125));
    let n = numbered(&long, 12);
    assert!(n.len() <= 255 && n.ends_with(" (12).txt"), "{} bytes: {n}", n.len());
}

#[test]
fn a_complete_partial_moves_into_place_without_replacing_a_file() {
    // Given DIR holding a file named like the one arriving.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("report.pdf"), b"already here").expect("write");
    let bytes = content(3 * GROUP + 100, 1);
    let checkpoints = Checkpointer::start().expect("thread");
    let mut p = Partial::open(dir.path(), "report.pdf", bytes.len() as u64, root_of(&bytes)).expect("open");

    // When every group is written and the transfer finishes.
    write_all(&mut p, &bytes);
    p.checkpoint(&checkpoints);
    let saved = p.finish(&checkpoints, "report.pdf").expect("the root matches");

    // Then the file lands under the next free name, byte-exact, the old one
    // is untouched, and neither partial nor state is left.
    assert_eq!(saved, dir.path().join("report (1).pdf"));
    assert_eq!(std::fs::read(&saved).expect("read"), bytes);
    assert_eq!(std::fs::read(dir.path().join("report.pdf")).expect("read"), b"already here");
    assert_eq!(names_in(dir.path()), ["report (1).pdf", "report.pdf"]);
}

#[test]
fn a_partial_that_does_not_hash_to_its_root_is_deleted_not_renamed() {
    // Given a partial of the root of one content, filled with another (what
    // a disk that lost or changed bytes after they were verified holds).
    let dir = tempfile::tempdir().expect("temp dir");
    let (good, bad) = (content(2 * GROUP, 1), content(2 * GROUP, 2));
    let checkpoints = Checkpointer::start().expect("thread");
    let mut p = Partial::open(dir.path(), "a.bin", good.len() as u64, root_of(&good)).expect("open");
    write_all(&mut p, &bad);
    p.checkpoint(&checkpoints);

    // When the transfer finishes, then the final check fails and nothing is
    // kept: no a.bin, no partial, no state.
    let err = p.finish(&checkpoints, "a.bin").expect_err("the bytes do not match the root");
    assert!(matches!(err, FinishError::Mismatch { got } if got == root_of(&bad)), "{err}");
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
}

#[test]
fn checkpointed_groups_are_held_again_after_a_restart() {
    // Given a partial with groups 0, 1 and 3 of 5 written and checkpointed.
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = content(5 * GROUP, 3);
    let root = root_of(&bytes);
    let checkpoints = Checkpointer::start().expect("thread");
    let mut p = Partial::open(dir.path(), "x", bytes.len() as u64, root).expect("open");
    for g in [0usize, 1, 3] {
        p.write((g * GROUP) as u64, &bytes[g * GROUP..(g + 1) * GROUP]).expect("written");
    }
    p.checkpoint(&checkpoints);
    checkpoints.flush();
    drop(p);

    // When the same content is opened again (under another name: a renamed
    // copy), then it holds exactly those groups.
    let p = Partial::open(dir.path(), "renamed copy", bytes.len() as u64, root).expect("open");
    assert_eq!(p.held(), [(0, 2), (3, 4)]);
    assert_eq!(p.held_bytes(), 3 * GROUP as u64);
    let state = read_state(&state_path(dir.path(), &root)).expect("a state");
    assert_eq!((state.name.as_str(), state.size, state.root), ("x", bytes.len() as u64, hex(&root)));

    // But a state for another size describes another file: nothing is held.
    let other = Partial::open(dir.path(), "x", bytes.len() as u64 + 1, root).expect("open");
    assert!(other.held().is_empty());
}

#[test]
fn groups_written_after_the_last_checkpoint_are_not_claimed() {
    // Given a checkpoint after group 0, then group 1 written (a crash now).
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = content(2 * GROUP, 4);
    let root = root_of(&bytes);
    let checkpoints = Checkpointer::start().expect("thread");
    let mut p = Partial::open(dir.path(), "x", bytes.len() as u64, root).expect("open");
    p.write(0, &bytes[..GROUP]).expect("written");
    p.checkpoint(&checkpoints);
    checkpoints.flush();
    p.write(GROUP as u64, &bytes[GROUP..]).expect("written");
    drop(p);

    // Then a restart holds group 0 only.
    let p = Partial::open(dir.path(), "x", bytes.len() as u64, root).expect("open");
    assert_eq!(p.held(), [(0, 1)]);
}

#[test]
fn expired_partials_and_states_are_swept_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old_root = [1u8; 32];
    let new_root = [2u8; 32];
    let orphan_root = [3u8; 32];
    let week_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    let touch = |path: &Path, when: SystemTime| {
        let f = File::create(path).expect("create");
        f.set_modified(when).expect("mtime");
    };
    // An expired transfer, a fresh one, an expired partial without state,
    // and files that only look like ours.
    touch(&state_path(dir.path(), &old_root), week_ago);
    touch(&partial_path(dir.path(), &old_root), SystemTime::now());
    touch(&state_path(dir.path(), &new_root), SystemTime::now());
    touch(&partial_path(dir.path(), &new_root), week_ago);
    touch(&partial_path(dir.path(), &orphan_root), week_ago);
    touch(&dir.path().join(".punchline-notes.state"), week_ago);
    touch(&dir.path().join("holiday.jpg"), week_ago);

    let deleted = sweep(dir.path(), EXPIRY).expect("swept");

    assert_eq!(deleted, 3);
    let mut kept = vec![
        ".punchline-notes.state".to_owned(),
        "holiday.jpg".to_owned(),
        format!(".punchline-{}.partial", hex(&new_root)),
        format!(".punchline-{}.state", hex(&new_root)),
    ];
    kept.sort();
    assert_eq!(names_in(dir.path()), kept);
}

#[test]
fn no_room_and_the_file_size_limit_are_a_full_disk() {
    use nix::errno::Errno;
    let err = |e: Errno| std::io::Error::from_raw_os_error(e as i32);
    assert_eq!(write_abort(&err(Errno::ENOSPC)), FileAbort::DiskFull);
    assert_eq!(write_abort(&err(Errno::EFBIG)), FileAbort::DiskFull);
    assert_eq!(write_abort(&err(Errno::EDQUOT)), FileAbort::DiskFull);
    assert_eq!(write_abort(&err(Errno::EIO)), FileAbort::WriteFailed);
    assert_eq!(write_abort(&err(Errno::EACCES)), FileAbort::WriteFailed);
}

#[test]
fn a_group_outside_the_file_is_not_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = Partial::open(dir.path(), "x", GROUP as u64, [9; 32]).expect("open");
    assert_eq!(p.write(GROUP as u64, &[0; 10]), Err(FileAbort::WriteFailed));
    assert_eq!(p.write(1, &[0; 10]), Err(FileAbort::WriteFailed));
    assert_eq!(p.write(u64::MAX - 5, &[0; 10]), Err(FileAbort::WriteFailed));
    assert!(p.held().is_empty());
}
