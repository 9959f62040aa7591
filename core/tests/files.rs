//! File transfer (issue 22) through the public API of the real machines on
//! the harness's network: offers and answers, BLAKE3 verification group by
//! group, resume from what the receiver holds, flow control, loss, path
//! changes, a full disk and a lying sender.

mod harness;

use std::time::Duration;

use harness::Harness;
use punchline_core::client::{ClientEvent, FileDirection, FileFailure, FileId, SendFileError};
use punchline_core::files::{group_count, TreeBuilder, GROUP};
use punchline_core::wire::frame::files::{FileAbort, FileRefusal};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `len` bytes that differ from group to group (a seeded pattern).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = harness::Rng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Two public clients, logged in; bob accepts files.
fn pair(seed: u64) -> (Harness, usize, usize) {
    let mut h = Harness::new(seed);
    let (a, b) = (h.config("alice"), h.config("bob"));
    let alice = h.add_public_client(a);
    let bob = h.add_public_client(b);
    h.clients[bob].disk.accept = true;
    h.run_for(secs(1));
    (h, alice, bob)
}

fn completed(h: &Harness, i: usize, direction: FileDirection) -> Vec<(Duration, FileId)> {
    h.find(i, |e| match e {
        ClientEvent::FileCompleted { file, direction: d, .. } if *d == direction => Some(*file),
        _ => None,
    })
}

fn failures(h: &Harness, i: usize) -> Vec<FileFailure> {
    h.find(i, |e| match e {
        ClientEvent::FileFailed { failure, .. } => Some(*failure),
        _ => None,
    })
    .into_iter()
    .map(|(_, f)| f)
    .collect()
}

fn received(h: &Harness, i: usize) -> Vec<(String, Vec<u8>)> {
    h.clients[i].disk.complete.clone()
}

#[test]
fn a_file_arrives_byte_exact_and_both_sides_hear_it_completed() {
    // Given alice and bob, logged in, bob accepting files.
    let (mut h, alice, bob) = pair(1);
    let bytes = content(300 * 1024 + 17, 1);
    // When alice sends a file of 300 KiB and a bit (19 groups, the last short).
    let file = h.send_file(alice, "bob", "report.pdf", bytes.clone());
    h.run_for(secs(10));
    // Then bob holds it, byte for byte, under its name; both sides heard of
    // its completion, alice once bob had written every group.
    assert_eq!(received(&h, bob), vec![("report.pdf".to_owned(), bytes)]);
    assert_eq!(completed(&h, alice, FileDirection::Outgoing).len(), 1);
    assert_eq!(completed(&h, alice, FileDirection::Outgoing)[0].1, file);
    assert_eq!(completed(&h, bob, FileDirection::Incoming).len(), 1);
    assert!(failures(&h, alice).is_empty() && failures(&h, bob).is_empty());
    let offered = h.find(bob, |e| match e {
        ClientEvent::FileOffered { name, size, peer, .. } => Some((name.clone(), *size, peer.clone())),
        _ => None,
    });
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].1, ("report.pdf".to_owned(), 300 * 1024 + 17, "alice".to_owned()));
}

#[test]
fn files_of_every_awkward_size_arrive_exact() {
    // Given sizes at the edges of pieces, groups and the manifest.
    for (n, size) in
        [0usize, 1, 1023, 1024, 1025, GROUP - 1, GROUP, GROUP + 1, 33 * GROUP, 33 * GROUP + 5].into_iter().enumerate()
    {
        let (mut h, alice, bob) = pair(10 + n as u64);
        let bytes = content(size, n as u64);
        // When alice sends one.
        h.send_file(alice, "bob", "f.bin", bytes.clone());
        h.run_for(secs(10));
        // Then it arrives exact.
        assert_eq!(received(&h, bob), vec![("f.bin".to_owned(), bytes)], "size {size}");
        assert_eq!(completed(&h, alice, FileDirection::Outgoing).len(), 1, "size {size}");
    }
}

#[test]
fn under_random_loss_the_file_arrives_exact_and_lost_pieces_were_sent_again() {
    for seed in 1..=4 {
        // Given 5 % loss on every packet crossing the internet.
        let (mut h, alice, bob) = pair(seed);
        h.loss = 0.05;
        let bytes = content(512 * 1024, seed);
        // When alice sends half a MiB.
        let file = h.send_file(alice, "bob", "photo.jpg", bytes.clone());
        let mut retransmitted = 0;
        for _ in 0..60 {
            h.run_for(Duration::from_millis(500));
            if let Some(p) = h.clients[alice].client.file_progress(file) {
                retransmitted = p.retransmitted;
            }
        }
        // Then it arrives exact, after pieces were sent again.
        assert_eq!(received(&h, bob), vec![("photo.jpg".to_owned(), bytes)], "seed {seed}");
        assert!(retransmitted > 0, "seed {seed}: nothing was resent under 5 % loss");
    }
}

#[test]
fn a_receiver_that_does_not_accept_files_refuses_and_the_sender_is_told_why() {
    // Given bob, who does not accept files.
    let (mut h, alice, bob) = pair(2);
    h.clients[bob].disk.accept = false;
    // When alice offers one.
    h.send_file(alice, "bob", "x.txt", content(10, 2));
    h.run_for(secs(3));
    // Then alice hears the refusal with its reason, and nothing was sent.
    assert_eq!(failures(&h, alice), vec![FileFailure::Refused(FileRefusal::NotAccepting)]);
    assert!(received(&h, bob).is_empty());
}

#[test]
fn a_name_a_receiver_would_refuse_is_refused_at_the_sender() {
    // Given alice, logged in.
    let (mut h, alice, _) = pair(3);
    for name in ["../etc/passwd", "/etc/passwd", "a/b", "x\ny", "CON", ".."] {
        let bytes = b"hello".to_vec();
        let mut tree = TreeBuilder::new(bytes.len() as u64);
        tree.update(&bytes);
        let (root, manifest) = tree.finish().expect("whole file");
        let source = punchline_core::client::FileSource { name: name.to_owned(), size: 5, root, manifest };
        // When she offers a file under a hostile name.
        let now = h.now;
        let result = h.clients[alice].client.send_file(now, "bob", source);
        // Then the offer is refused before anything is sent.
        assert!(matches!(result, Err(SendFileError::BadName(_))), "{name:?}: {result:?}");
    }
}

#[test]
fn a_receiver_holding_part_of_the_content_resumes_and_only_the_rest_is_sent() {
    // Given bob already holding the first 10 of 20 groups of the file
    // (under any name: the transfer is addressed by content).
    let (mut h, alice, bob) = pair(4);
    let bytes = content(20 * GROUP, 4);
    let mut tree = TreeBuilder::new(bytes.len() as u64);
    tree.update(&bytes);
    let (root, _) = tree.finish().expect("whole file");
    let mut partial = vec![0u8; bytes.len()];
    partial[..10 * GROUP].copy_from_slice(&bytes[..10 * GROUP]);
    h.clients[bob].disk.partial.insert(root, (partial, (0..10).collect()));
    // When alice sends the file under another name.
    let file = h.send_file(alice, "bob", "renamed copy.bin", bytes.clone());
    h.run_for(secs(10));
    // Then the accept named the 10 groups, alice heard they were resumed,
    // the file is whole, and only about half the pieces went on the wire.
    let resumed = h.find(alice, |e| match e {
        ClientEvent::FileAccepted { file: f, resumed } if *f == file => Some(*resumed),
        _ => None,
    });
    assert_eq!(resumed.iter().map(|(_, r)| *r).collect::<Vec<_>>(), vec![10 * GROUP as u64]);
    assert_eq!(received(&h, bob), vec![("renamed copy.bin".to_owned(), bytes)]);
    let pieces = h.file_pieces_sent(alice);
    assert!((10 * 16..10 * 16 + 20).contains(&pieces), "{pieces} pieces sent for 10 groups of 16 and the manifest");
}

#[test]
fn a_full_disk_ends_the_transfer_on_both_sides_and_keeps_what_was_written() {
    // Given bob with room for 100 KiB.
    let (mut h, alice, bob) = pair(5);
    h.clients[bob].disk.capacity = Some(100 * 1024);
    let bytes = content(40 * GROUP, 5);
    // When alice sends 640 KiB.
    h.send_file(alice, "bob", "big.iso", bytes.clone());
    h.run_for(secs(10));
    // Then bob reports its disk full, alice hears it from bob, and the
    // groups written before stay for a resume.
    assert_eq!(failures(&h, bob), vec![FileFailure::Aborted { reason: FileAbort::DiskFull, by_peer: false }]);
    assert_eq!(failures(&h, alice), vec![FileFailure::Aborted { reason: FileAbort::DiskFull, by_peer: true }]);
    assert!(received(&h, bob).is_empty());
    let (partial, groups) = h.clients[bob].disk.partial.values().next().expect("the partial is kept");
    assert!(!groups.is_empty() && groups.len() < 40);
    for g in groups {
        let range = *g as usize * GROUP..(*g as usize + 1) * GROUP;
        assert_eq!(partial[range.clone()], bytes[range], "group {g} holds the true bytes");
    }
}

#[test]
fn a_sender_whose_data_does_not_match_its_root_is_caught_and_nothing_is_written_from_it() {
    // Given alice whose reads of the file's 5th group come back altered (a
    // lying sender, or a file that changed while it was sent).
    let (mut h, alice, bob) = pair(6);
    h.clients[alice].disk.corrupt_offset = Some(4 * GROUP as u64);
    let bytes = content(10 * GROUP, 6);
    // When she sends it.
    h.send_file(alice, "bob", "doc.txt", bytes);
    h.run_for(secs(10));
    // Then bob ends the transfer as failed verification, alice hears why,
    // and group 4 was never written.
    assert_eq!(failures(&h, bob), vec![FileFailure::Aborted { reason: FileAbort::VerificationFailed, by_peer: false }]);
    assert_eq!(
        failures(&h, alice),
        vec![FileFailure::Aborted { reason: FileAbort::VerificationFailed, by_peer: true }]
    );
    assert!(received(&h, bob).is_empty());
    let written = h.find(bob, |e| match e {
        ClientEvent::FileWrite { offset, .. } => Some(*offset),
        _ => None,
    });
    assert!(written.iter().all(|(_, o)| *o != 4 * GROUP as u64));
}

#[test]
fn a_receiver_that_does_not_write_holds_the_sender_to_its_window() {
    // Given bob whose disk does not confirm writes.
    let (mut h, alice, bob) = pair(7);
    h.clients[bob].disk.hold_writes = true;
    let size = 16 * 1024 * 1024;
    let bytes = content(size, 7);
    // When alice sends 16 MiB and bob writes nothing for 10 s.
    h.send_file(alice, "bob", "video.mp4", bytes.clone());
    h.run_for(secs(10));
    // Then alice sent no more than bob's window (8 MiB) and the manifest.
    let pieces = h.distinct_file_pieces_sent(alice);
    let manifest_pieces = (group_count(size as u64) * 32).div_ceil(1024) as usize;
    assert!(pieces <= 8 * 1024 + manifest_pieces, "{pieces} pieces sent into an 8 MiB window");
    assert!(pieces >= 4 * 1024, "{pieces}: the window was not used");
    // And when bob's disk catches up, the rest follows.
    for _ in 0..40 {
        h.release_writes(bob);
        h.run_for(Duration::from_millis(500));
    }
    assert_eq!(received(&h, bob), vec![("video.mp4".to_owned(), bytes)]);
}

#[test]
fn files_both_ways_at_once_both_arrive_and_a_text_is_not_stuck_behind_them() {
    // Given alice and bob, both accepting files.
    let (mut h, alice, bob) = pair(8);
    h.clients[alice].disk.accept = true;
    let (a_bytes, b_bytes) = (content(8 * 1024 * 1024, 81), content(6 * 1024 * 1024, 82));
    // When each sends the other a file, and alice a text a moment later.
    h.send_file(alice, "bob", "a.bin", a_bytes.clone());
    h.send_file(bob, "alice", "b.bin", b_bytes.clone());
    h.run_for(Duration::from_millis(100));
    let text = h.send_text(alice, "bob", "are you there?");
    h.run_for(secs(20));
    // Then both files arrive, and the text reached bob before either was done.
    assert_eq!(received(&h, bob), vec![("a.bin".to_owned(), a_bytes)]);
    assert_eq!(received(&h, alice), vec![("b.bin".to_owned(), b_bytes)]);
    let text_at = h.find(bob, |e| match e {
        ClientEvent::TextReceived { id, .. } if *id == text => Some(()),
        _ => None,
    });
    let done_at =
        completed(&h, bob, FileDirection::Incoming)[0].0.min(completed(&h, alice, FileDirection::Incoming)[0].0);
    assert_eq!(text_at.len(), 1);
    assert!(text_at[0].0 < done_at, "the text came at {:?}, after a file ({done_at:?})", text_at[0].0);
}

#[test]
fn a_transfer_survives_a_move_from_the_relay_to_a_direct_path_and_back() {
    // Given alice and bob behind NATs, whose session starts on the relay.
    let mut h = Harness::new(9);
    let (a, b) = (h.config("alice"), h.config("bob"));
    let alice = h.add_natted_client(a, false);
    let bob = h.add_natted_client(b, false);
    h.clients[bob].disk.accept = true;
    h.run_for(secs(1));
    let bytes = content(3 * 1024 * 1024, 9);
    // When alice sends 3 MiB as the session goes direct, and the direct
    // path dies in the middle of it.
    h.send_file(alice, "bob", "a.bin", bytes.clone());
    h.run_for(secs(2));
    h.drop_direct = true;
    h.run_for(secs(30));
    // Then the path went direct and fell back, and the file arrived exact.
    let direct = h.find(alice, |e| matches!(e, ClientEvent::PathDirect { .. }).then_some(()));
    let fell_back = h.find(alice, |e| matches!(e, ClientEvent::PathFellBack { .. }).then_some(()));
    assert!(!direct.is_empty() && !fell_back.is_empty(), "direct {direct:?}, fell back {fell_back:?}");
    assert_eq!(received(&h, bob), vec![("a.bin".to_owned(), bytes)]);
}

#[test]
fn a_transfer_ends_with_its_session_when_the_peer_goes_away() {
    // Given a transfer under way.
    let (mut h, alice, bob) = pair(10);
    h.clients[bob].disk.hold_writes = true;
    let file = h.send_file(alice, "bob", "a.bin", content(4 * 1024 * 1024, 10));
    h.run_for(secs(2));
    // When bob vanishes for longer than the session timeout.
    h.clients[bob].dead = true;
    h.run_for(secs(60));
    // Then alice's transfer ends with the session.
    let failed = h.find(alice, |e| match e {
        ClientEvent::FileFailed { file: f, failure: FileFailure::SessionClosed(_) } if *f == file => Some(()),
        _ => None,
    });
    assert_eq!(failed.len(), 1);
}

#[test]
fn the_same_seed_gives_the_same_transfer_byte_for_byte() {
    let run = || {
        let (mut h, alice, _) = pair(11);
        h.loss = 0.02;
        h.send_file(alice, "bob", "a.bin", content(256 * 1024, 11));
        h.run_for(secs(10));
        h.log.clone()
    };
    assert_eq!(run(), run());
}

#[test]
fn over_the_relay_a_transfer_keeps_to_the_session_s_byte_budget_and_completes() {
    for seed in 1..=3 {
        // Given two clients that never punch, so everything rides the relay,
        // whose budget is 512 KiB of burst and 2 MiB/s.
        let mut h = Harness::new(20 + seed);
        let (mut a, mut b) = (h.config("alice"), h.config("bob"));
        a.punch = false;
        b.punch = false;
        let alice = h.add_public_client(a);
        let bob = h.add_public_client(b);
        h.clients[bob].disk.accept = true;
        h.run_for(secs(1));
        let bytes = content(8 * 1024 * 1024, seed);
        // When alice sends 8 MiB, four times the budget's rate.
        h.send_file(alice, "bob", "big.bin", bytes.clone());
        let start = h.elapsed();
        h.run_for(secs(30));
        // Then the relay throttled some of it, the sender slowed down
        // rather than failing, and the file is whole; it took at least
        // what the budget allows.
        assert!(h.server.stats().relay_throttled > 0, "seed {seed}: the budget was never reached");
        assert_eq!(received(&h, bob), vec![("big.bin".to_owned(), bytes)], "seed {seed}");
        let done = completed(&h, bob, FileDirection::Incoming)[0].0 - start;
        assert!(done >= Duration::from_millis(3500), "seed {seed}: 8 MiB through a 2 MiB/s relay in {done:?}");
        assert!(failures(&h, alice).is_empty(), "seed {seed}");
    }
}

#[test]
fn two_files_one_way_take_turns_and_finish_together() {
    // Given alice and bob.
    let (mut h, alice, bob) = pair(30);
    let (one, two) = (content(4 * 1024 * 1024, 31), content(4 * 1024 * 1024, 32));
    // When alice sends two files of the same size at once.
    h.send_file(alice, "bob", "one.bin", one.clone());
    h.send_file(alice, "bob", "two.bin", two.clone());
    h.run_for(secs(20));
    // Then both arrive, and neither waited for the other: their pieces
    // interleaved, so they completed close together.
    let mut got = received(&h, bob);
    got.sort();
    assert_eq!(got, vec![("one.bin".to_owned(), one), ("two.bin".to_owned(), two)]);
    let done = completed(&h, bob, FileDirection::Incoming);
    let offered = h.find(bob, |e| matches!(e, ClientEvent::FileOffered { .. }).then_some(()))[0].0;
    let (first, second) = (done[0].0 - offered, done[1].0 - offered);
    assert!(first.as_secs_f64() > 0.8 * second.as_secs_f64(), "one done after {first:?}, the other after {second:?}");
    let pieces = h.file_pieces(alice);
    let switches = pieces.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(switches > pieces.len() / 4, "{switches} switches between the transfers in {} pieces", pieces.len());
}
