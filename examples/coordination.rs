//! The coordination recipes on a local three-node cluster: a lock handed over when its holder dies,
//! leader election, a barrier, a work queue, and service discovery used by two toy services.
//!
//! Run: `cargo run --release --example coordination`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gridkeeper::recipes::{barrier, discovery, election, lock, queue};
use gridkeeper::{Client, LocalCluster, NodeId};

async fn client(cluster: &LocalCluster, node: u64) -> Result<Client> {
    Ok(Client::connect(cluster.admin(NodeId(node)), cluster.access()?).await?)
}

async fn lock_demo(cluster: &LocalCluster) -> Result<()> {
    println!("\n-- lock: the holder dies, the next waiter gets the lock");
    let (holder, waiter) = (client(cluster, 1).await?, client(cluster, 2).await?);
    let holder_session = holder.open_session(1_000).await?;
    let held = lock::acquire(&holder, &holder_session, "/locks/report").await?;
    println!("   holder (via node 1) took the lock as {}", held.path());
    let waiting = tokio::spawn(async move {
        let session = waiter.open_session(5_000).await?;
        let started = Instant::now();
        let guard = lock::acquire(&waiter, &session, "/locks/report").await?;
        println!("   waiter (via node 2) got it after {} ms, as {}", started.elapsed().as_millis(), guard.path());
        guard.release().await?;
        session.close().await?;
        anyhow::Ok(())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("   the holder stops keeping its session alive (as a crashed process would)");
    std::mem::forget(held);
    drop(holder_session);
    waiting.await??;
    Ok(())
}

async fn election_demo(cluster: &LocalCluster) -> Result<()> {
    println!("\n-- leader election");
    let (a, b) = (client(cluster, 1).await?, client(cluster, 3).await?);
    let (a_session, b_session) = (a.open_session(5_000).await?, b.open_session(5_000).await?);
    let leadership = election::campaign(&a, &a_session, "/apps/billing/leader", "billing-a").await?;
    println!("   leader: {:?}", election::leader(&b, "/apps/billing/leader").await?);
    let standby = tokio::spawn(async move {
        let lead = election::campaign(&b, &b_session, "/apps/billing/leader", "billing-b").await?;
        println!("   billing-b takes over: {:?}", election::leader(&b, "/apps/billing/leader").await?);
        lead.resign().await?;
        anyhow::Ok(())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    leadership.resign().await?;
    standby.await??;
    Ok(())
}

async fn barrier_demo(cluster: &LocalCluster) -> Result<()> {
    println!("\n-- barrier: three workers start together");
    let mut workers = Vec::new();
    for worker in 1..=3u64 {
        let client = client(cluster, worker).await?;
        workers.push(tokio::spawn(async move {
            let session = client.open_session(5_000).await?;
            barrier::enter(&client, &session, "/barriers/nightly", &format!("worker-{worker}"), 3).await?;
            println!("   worker-{worker} passed the barrier");
            anyhow::Ok(())
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

async fn queue_demo(cluster: &LocalCluster) -> Result<()> {
    println!("\n-- queue: one producer, two consumers, every job taken once");
    let producer = client(cluster, 1).await?;
    for job in 0..6 {
        queue::push(&producer, "/queues/jobs", &format!("job-{job}")).await?;
    }
    let mut consumers = Vec::new();
    for node in [2, 3] {
        let consumer = client(cluster, node).await?;
        consumers.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            while let Some(job) = queue::try_pop(&consumer, "/queues/jobs").await? {
                taken.push(job);
            }
            println!("   consumer via node {node} took {taken:?}");
            anyhow::Ok(())
        }));
    }
    for consumer in consumers {
        consumer.await??;
    }
    Ok(())
}

async fn discovery_demo(cluster: &LocalCluster) -> Result<()> {
    println!("\n-- service discovery: two toy services find each other");
    let (search, frontend) = (client(cluster, 1).await?, client(cluster, 2).await?);
    let search_session = search.open_session(1_000).await?;
    discovery::register(&search, &search_session, "search", "search-1", "127.0.0.1:8081").await?;
    let frontend_session = frontend.open_session(5_000).await?;
    discovery::register(&frontend, &frontend_session, "frontend", "frontend-1", "127.0.0.1:8080").await?;
    println!("   frontend discovers search: {:?}", discovery::discover(&frontend, "search").await?);
    let mut changes = discovery::changes(&frontend, "search").await?;
    drop(search_session);
    tokio::time::timeout(Duration::from_secs(10), changes.recv()).await.context("no change seen")?;
    println!("   search-1 died; frontend now sees: {:?}", discovery::discover(&frontend, "search").await?);
    frontend_session.close().await?;
    Ok(())
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("gk-coordination-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = LocalCluster::start(3, &dir)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).context("no leader")?;
    println!("3-node cluster up on 127.0.0.1; coordinator leader: node {leader}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        lock_demo(&cluster).await?;
        election_demo(&cluster).await?;
        barrier_demo(&cluster).await?;
        queue_demo(&cluster).await?;
        discovery_demo(&cluster).await
    })?;
    drop(runtime);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
