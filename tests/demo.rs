//! `lagesbild demo --once`: five nodes start, all healthy, each reaches every peer,
//! and all stop cleanly.

mod common;

#[test]
fn the_demo_brings_up_five_healthy_nodes_that_reach_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let out = common::lagesbild()
        .args(["demo", "--once", "--dir"])
        .arg(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 5 nodes healthy"), "{stdout}");
    for org in [
        "polisen",
        "stockholm-stad",
        "amf-fastigheter",
        "svensk-handel",
        "scandic",
    ] {
        let line = format!("{org:<18} reaches 4 of 4 peer nodes");
        assert!(stdout.contains(&line), "{line:?} in {stdout}");
        assert!(work.join(org).join("node.toml").exists());
    }
    assert!(stdout.contains("all nodes stopped"), "{stdout}");
    assert!(
        work.join("imy/client.toml").exists(),
        "the auditor has tools"
    );
    assert!(
        !work.join("imy/node.toml").exists(),
        "the auditor runs no node"
    );
}
