//! The Redis Cluster harness against a real cluster: it starts whole, its
//! slots are Redis's, commands reach the master of their key, and a
//! crashed master's entries are served by its promoted replica.

use std::time::{Duration, Instant};

use activity_tracking::harness::{RedisCluster, key_slot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_master_fails_over_to_its_replica_with_its_entries() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start().expect("cluster starts");
    let start_took = started.elapsed();

    // Whole: 3 masters covering every slot, one replica each, six nodes
    // named in the URL.
    assert_eq!(cluster.masters().len(), 3);
    let slots: usize = cluster.masters().iter().map(|m| m.slot_count()).sum();
    assert_eq!(slots, 16384);
    for master in cluster.masters() {
        assert_eq!(master.replicas.len(), 1, "{} has its replica", master.node);
    }
    assert_eq!(cluster.addrs().len(), 6);
    let url = cluster.redis_url();
    assert_eq!(url.split(',').count(), 6);
    assert!(
        url.split(',')
            .all(|node| node.starts_with("redis://127.0.0.1:"))
    );

    // The harness's slots are the server's, hash tags included.
    for key in [
        "foo",
        "user_activities_stream",
        "{user1000}.following",
        "user1000",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "{s3}activity",
        "",
    ] {
        let server = cluster.server_key_slot(key).await.expect("CLUSTER KEYSLOT");
        assert_eq!(key_slot(key), server, "slot of {key:?}");
    }

    // Keys on every master: 30 keys spread over the three.
    let keys: Vec<String> = (0..30).map(|i| format!("harness-stream-{i}")).collect();
    let spread = cluster.keys_per_master(&keys);
    assert_eq!(spread.iter().map(|(_, n)| n).sum::<usize>(), keys.len());
    assert!(
        spread.iter().all(|(_, n)| *n > 0),
        "keys on every master: {spread:?}"
    );

    // Sent to a node that does not serve the key, a command is redirected.
    let key = &keys[0];
    let elsewhere = cluster
        .masters()
        .iter()
        .find(|m| !m.owns(key_slot(key)))
        .expect("another master")
        .node
        .clone();
    let mut conn = redis::Client::open(elsewhere.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let moved = redis::cmd("XLEN")
        .arg(key)
        .query_async::<u64>(&mut conn)
        .await
        .expect_err("a master refuses a key of another's slot");
    assert!(moved.redirect_node().is_some(), "MOVED: {moved}");

    for (i, key) in keys.iter().enumerate() {
        for n in 0..=i % 3 {
            let id: String = cluster
                .query(key, redis::cmd("XADD").arg(key).arg("*").arg("n").arg(n))
                .await
                .expect("XADD");
            assert!(id.contains('-'), "an entry id: {id}");
        }
    }
    let expected = |key: &String| {
        let i: usize = key.rsplit('-').next().unwrap().parse().unwrap();
        (i % 3 + 1) as u64
    };
    for key in &keys {
        assert_eq!(cluster.xlen(key).await.unwrap(), expected(key), "{key}");
    }
    let total: u64 = keys.iter().map(expected).sum();
    assert_eq!(cluster.xlen_total(&keys).await.unwrap(), total);

    // The entries reach the replicas before the crash.
    cluster
        .wait_replicated(Duration::from_secs(2))
        .await
        .expect("replicated");

    // Crash the master of the first key's slot.
    let slot = key_slot(key);
    let replica = cluster.master_of_slot(slot).replicas[0].clone();
    let dead = cluster.kill_master_of_slot(slot).expect("SIGKILL");
    let failover = cluster
        .wait_for_failover(Duration::from_secs(20))
        .await
        .expect("failover");
    assert_eq!(failover.dead, dead);
    assert_eq!(failover.promoted, replica, "its replica took over");
    assert_eq!(cluster.masters().len(), 3);
    assert!(cluster.masters().iter().all(|m| m.node != dead));
    assert_eq!(cluster.master_of_slot(slot).node, replica);
    assert!(cluster.master_of_slot(slot).replicas.is_empty());

    // Every key is readable, the dead master's from the promoted replica.
    let moved_keys: Vec<&String> = keys
        .iter()
        .filter(|k| failover.slots.iter().any(|r| r.contains(&key_slot(k))))
        .collect();
    assert!(!moved_keys.is_empty());
    let mut direct = redis::Client::open(replica.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for key in &moved_keys {
        let len: u64 = redis::cmd("XLEN")
            .arg(key.as_str())
            .query_async(&mut direct)
            .await
            .expect("the promoted replica serves the dead master's keys");
        assert_eq!(len, expected(key), "{key} after the failover");
    }
    assert_eq!(cluster.xlen_total(&keys).await.unwrap(), total);

    // And takes writes.
    let _: String = cluster
        .query(
            key,
            redis::cmd("XADD").arg(key).arg("*").arg("n").arg("after"),
        )
        .await
        .expect("XADD after the failover");
    assert_eq!(cluster.xlen(key).await.unwrap(), expected(key) + 1);

    eprintln!(
        "cluster start {start_took:?}, failover {:?} (node timeout {:?}), whole test {:?}",
        failover.took,
        cluster.options().node_timeout,
        started.elapsed()
    );
}
