//! Word count as map/reduce on the task grid, over files.
//!
//! Map: one task per file reads it, counts its words, and splits the counts into `PARTITIONS` parts by a
//! hash of the word. Reduce: one task per partition merges that partition's parts from every map
//! result; each reduce task carries its partition as the shard key, so consistent hashing sends the same
//! partition to the same node. The driver prints the most frequent words.
//!
//! Run: `cargo run --release --example wordcount [DIR]` (default: this repository's `runtime/`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gridkeeper::grid::task::Strategy;
use gridkeeper::{AttemptInfo, Client, Grid, LocalCluster, LocalOptions, SubmitOptions, Task, TaskError};

const PARTITIONS: u32 = 4;
/// Files larger than this are skipped: a map input is a path, but its output must fit a task result.
const FILE_BYTES_MAX: u64 = 256 << 10;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct MapInput {
    path: String,
}

/// Word counts, one list per partition.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Partitioned {
    parts: Vec<Vec<(String, u64)>>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct ReduceInput {
    partition: u32,
    parts: Vec<Vec<(String, u64)>>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Counts {
    words: Vec<(String, u64)>,
}

fn partition_of(word: &str) -> u32 {
    let hash = word
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3));
    (hash % u64::from(PARTITIONS)) as u32
}

#[derive(Default)]
struct MapWords;

impl Task for MapWords {
    const NAME: &'static str = "wordcount-map";
    type Input = MapInput;
    type Output = Partitioned;

    async fn run(&self, input: MapInput, _attempt: AttemptInfo) -> Result<Partitioned, TaskError> {
        let text = tokio::fs::read_to_string(&input.path)
            .await
            .map_err(|error| TaskError::new(format!("{}: {error}", input.path)))?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for word in text.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|word| word.len() > 2) {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
        let mut parts = vec![Vec::new(); PARTITIONS as usize];
        for (word, count) in counts {
            parts[partition_of(&word) as usize].push((word, count));
        }
        Ok(Partitioned { parts })
    }
}

#[derive(Default)]
struct ReduceWords;

impl Task for ReduceWords {
    const NAME: &'static str = "wordcount-reduce";
    type Input = ReduceInput;
    type Output = Counts;

    async fn run(&self, input: ReduceInput, _attempt: AttemptInfo) -> Result<Counts, TaskError> {
        let mut merged: BTreeMap<String, u64> = BTreeMap::new();
        for (word, count) in input.parts.into_iter().flatten() {
            if partition_of(&word) != input.partition {
                return Err(TaskError::new(format!("{word} does not belong to partition {}", input.partition)));
            }
            *merged.entry(word).or_default() += count;
        }
        Ok(Counts { words: merged.into_iter().collect() })
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else if path.metadata().is_ok_and(|meta| meta.len() <= FILE_BYTES_MAX) {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runtime"), PathBuf::from);
    let mut files = Vec::new();
    files_under(&root, &mut files)?;
    files.sort();
    println!("counting words in {} files under {}", files.len(), root.display());

    let dir = std::env::temp_dir().join(format!("gridkeeper-wordcount-{}", std::process::id()));
    let options = LocalOptions {
        kinds: gridkeeper::node::builtin::kinds().with(MapWords).with(ReduceWords),
        slots: 2,
        ..LocalOptions::default()
    };
    let cluster = LocalCluster::start_with(3, &dir, options)?;
    cluster.wait_for_leader(Duration::from_secs(10)).context("no leader")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let admins: Vec<SocketAddr> = cluster.admins().values().copied().collect();
    let grid = Grid::remote(runtime.block_on(Client::connect_any(&admins, cluster.access()?))?);
    let started = Instant::now();

    runtime.block_on(async {
        let inputs: Vec<MapInput> = files.iter().map(|path| MapInput { path: path.display().to_string() }).collect();
        let maps = grid.submit_batch::<MapWords>(&inputs, &SubmitOptions::default()).await?;
        let mut partitions: Vec<Vec<Vec<(String, u64)>>> = vec![Vec::new(); PARTITIONS as usize];
        for map in &maps {
            let output = map.result(Duration::from_secs(60)).await?;
            for (partition, part) in output.parts.into_iter().enumerate() {
                partitions[partition].push(part);
            }
        }
        println!("map: {} tasks done in {:?}", maps.len(), started.elapsed());

        let mut reduces = Vec::new();
        for (partition, parts) in partitions.into_iter().enumerate() {
            let options = SubmitOptions {
                shard_key: Some(format!("partition-{partition}")),
                strategy: Some(Strategy::ConsistentHash),
                ..SubmitOptions::default()
            };
            let input = ReduceInput { partition: partition as u32, parts };
            reduces.push(grid.submit::<ReduceWords>(&input, &options).await?);
        }
        let mut totals: Vec<(String, u64)> = Vec::new();
        for reduce in &reduces {
            let node = reduce.status().await?.attempts.last().map_or(0, |attempt| attempt.node);
            let counts = reduce.result(Duration::from_secs(60)).await?;
            println!("reduce: partition of {} words merged on node {node}", counts.words.len());
            totals.extend(counts.words);
        }
        totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        println!("\nmost frequent words ({:?} in all):", started.elapsed());
        for (word, count) in totals.iter().take(10) {
            println!("  {count:>6}  {word}");
        }
        anyhow::Ok(())
    })?;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
