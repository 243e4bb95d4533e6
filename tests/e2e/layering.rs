//! The crate order ARCHITECTURE.md describes, checked on the dependency graph
//! that `cargo metadata` resolves: the words, the grid and the privacy engine
//! do no I/O, and the report domain and the policy know no storage.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every package's normal (not dev, not build) dependencies, by name.
fn normal_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| names[d["pkg"].as_str().unwrap()].to_owned())
                .collect();
            (names[node["id"].as_str().unwrap()].to_owned(), deps)
        })
        .collect()
}

/// Every package `name` depends on, directly or not.
fn closure(graph: &BTreeMap<String, Vec<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        for dep in graph.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn domain_crates_depend_on_no_storage_and_the_engine_on_no_io() {
    let graph = normal_dependencies();
    let storage = [
        "sled",
        "lagesbild-store",
        "lagesbild-audit",
        "lagesbild-node",
    ];
    let io = ["tokio", "tonic", "rustls", "hyper"];
    let rules: [(&str, &[&[&str]]); 6] = [
        ("lagesbild-vocabulary", &[&storage, &io]),
        ("lagesbild-geo", &[&storage, &io]),
        ("lagesbild-privacy", &[&storage, &io]),
        ("lagesbild-reports", &[&storage]),
        ("lagesbild-policy", &[&storage]),
        ("lagesbild-store", &[&["lagesbild-node", "lagesbild-audit"]]),
    ];
    for (krate, forbidden) in rules {
        let deps = closure(&graph, krate);
        assert!(graph.contains_key(krate), "{krate} is not in the workspace");
        for name in forbidden.iter().copied().flatten() {
            assert!(!deps.contains(*name), "{krate} depends on {name}");
        }
    }
    // The check sees what it looks for: the node does use storage and I/O.
    let node = closure(&graph, "lagesbild-node");
    for name in storage
        .iter()
        .chain(&io)
        .filter(|n| **n != "lagesbild-node")
    {
        assert!(
            node.contains(*name),
            "lagesbild-node should depend on {name}"
        );
    }
}
