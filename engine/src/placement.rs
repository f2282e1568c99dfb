//! Cluster placement: which (node, drive) holds each slot of each partition's
//! erasure set (ARCHITECTURE.md §4). A pure function of the previous placement
//! and the current nodes, so every gateway and node that reads the same inputs
//! computes the same map; the cluster stores the result, with its version, in
//! etcd.
//!
//! What it guarantees, in order of priority:
//! 1. **Distinct nodes.** The n = k + m slots of a set are on n different nodes,
//!    so a node lost costs each set at most one slot.
//! 2. **Zones.** A set puts at most `c` slots in one zone, `c` the smallest the
//!    zones' sizes allow (`ceil(n / zones)` for zones of equal size), so a lost
//!    zone costs each set as few slots as it can.
//! 3. **Balance.** Each node holds slots in proportion to its drives, within one
//!    slot of its share whenever 1 and 2 allow; its slots are spread over its
//!    drives the same way.
//! 4. **Least movement.** A slot stays where it was unless its node left, or its
//!    node holds more than its share under the new membership, or keeping it
//!    would break 1 or 2. So adding a node moves only what the newcomer's share
//!    takes, and removing one moves only what it held.
//!
//! The algorithm is greedy and deterministic: keep what may stay (partitions in
//! order), then fill each empty slot with the eligible node furthest below its
//! share, ties broken by a hash of (partition, node) so that sets do not all
//! pick nodes in the same order.
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;

/// A storage node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: String,
    pub zone: String,
    pub drives: u32,
}

/// One slot of an erasure set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub node: String,
    pub drive: u32,
}

/// The map from partitions to erasure sets, with the version it was stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub version: u64,
    pub k: u32,
    pub m: u32,
    /// `sets[p][slot]`.
    pub sets: Vec<Vec<Slot>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("{nodes} nodes cannot hold sets of {n} slots on distinct nodes")]
    TooFewNodes { nodes: usize, n: usize },
    #[error("node {0:?} has no drives")]
    NoDrives(String),
    #[error("node id {0:?} appears twice")]
    DuplicateNode(String),
    #[error("invalid code {k}+{m}: k and m must be at least 1 and k + m at most 256")]
    BadCode { k: u32, m: u32 },
    #[error("invalid partition count {0}")]
    BadPartitions(u32),
}

impl Placement {
    /// Slots per set.
    pub fn n(&self) -> usize {
        (self.k + self.m) as usize
    }

    /// How many slots each node holds.
    pub fn load(&self) -> BTreeMap<&str, usize> {
        let mut load = BTreeMap::new();
        for set in &self.sets {
            for s in set {
                *load.entry(s.node.as_str()).or_default() += 1;
            }
        }
        load
    }

    /// Slots whose (node, drive) differ from `other`'s: the data a change moves.
    pub fn moved_slots(&self, other: &Placement) -> usize {
        self.sets.iter().zip(&other.sets).map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count()).sum()
    }
}

fn mix(partition: usize, node: &str) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x7465_7373_6572_6131, partition as u64);
    h.write(node.as_bytes());
    h.finish()
}

/// The fewest slots of one set any zone must take: the smallest `c` with
/// `sum over zones of min(c, nodes in the zone) >= n`. With it a set always has
/// an eligible node for its next slot.
fn zone_cap(nodes: &[NodeSpec], n: usize) -> usize {
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for x in nodes {
        *sizes.entry(x.zone.as_str()).or_default() += 1;
    }
    (1..=n).find(|&c| sizes.values().map(|&z| z.min(c)).sum::<usize>() >= n).unwrap_or(n)
}

/// Computes the placement of `partitions` sets of `k + m` slots over `nodes`,
/// starting from `prev` (same partition count and code) to move as little as
/// possible. The result's version is `prev`'s plus one (1 without `prev`).
pub fn compute(
    prev: Option<&Placement>,
    nodes: &[NodeSpec],
    partitions: u32,
    k: u32,
    m: u32,
) -> Result<Placement, PlacementError> {
    if k == 0 || m == 0 || k + m > 256 {
        return Err(PlacementError::BadCode { k, m });
    }
    if partitions == 0 {
        return Err(PlacementError::BadPartitions(partitions));
    }
    let n = (k + m) as usize;
    let mut by_id: HashMap<&str, &NodeSpec> = HashMap::new();
    for node in nodes {
        if node.drives == 0 {
            return Err(PlacementError::NoDrives(node.id.clone()));
        }
        if by_id.insert(node.id.as_str(), node).is_some() {
            return Err(PlacementError::DuplicateNode(node.id.clone()));
        }
    }
    if nodes.len() < n {
        return Err(PlacementError::TooFewNodes { nodes: nodes.len(), n });
    }
    let version = prev.map_or(0, |p| p.version) + 1;
    // A placement of another shape (partition count, code) is not a starting point.
    let prev = prev.filter(|p| p.sets.len() == partitions as usize && p.k == k && p.m == m);
    // Shares: slots in proportion to drives; the remainder goes to the nodes with the
    // largest fractional parts (ties by id), so the shares sum to the total exactly.
    let total = partitions as u64 * n as u64;
    let drives: u64 = nodes.iter().map(|x| x.drives as u64).sum();
    let mut share: HashMap<&str, u64> = HashMap::new();
    let mut rest: Vec<(u64, &str)> = Vec::new();
    let mut given = 0;
    for node in nodes {
        let exact = total * node.drives as u64;
        share.insert(node.id.as_str(), exact / drives);
        given += exact / drives;
        rest.push((exact % drives, node.id.as_str()));
    }
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    for (_, id) in rest.iter().take((total - given) as usize) {
        *share.get_mut(id).expect("every node has a share") += 1;
    }
    let zone_cap = zone_cap(nodes, n);

    let mut load: HashMap<&str, u64> = nodes.iter().map(|x| (x.id.as_str(), 0)).collect();
    let mut drive_load: HashMap<(&str, u32), u64> = HashMap::new();
    let mut sets: Vec<Vec<Option<Slot>>> = vec![vec![None; n]; partitions as usize];

    // 1. Keep what may stay: slots on live nodes and drives that break neither the
    //    distinct-node nor the zone rule...
    if let Some(prev) = prev {
        for (p, set) in prev.sets.iter().enumerate() {
            let mut zone_count: HashMap<&str, usize> = HashMap::new();
            for (i, slot) in set.iter().enumerate() {
                let Some(node) = by_id.get(slot.node.as_str()) else { continue };
                if slot.drive >= node.drives {
                    continue;
                }
                let dup = sets[p].iter().flatten().any(|s| s.node == node.id);
                let zc = zone_count.get(node.zone.as_str()).copied().unwrap_or(0);
                if dup || zc >= zone_cap {
                    continue;
                }
                *zone_count.entry(node.zone.as_str()).or_default() += 1;
                sets[p][i] = Some(slot.clone());
            }
        }
        // ...then, of a node holding more than its share, give up the excess, taken
        // from the sets that gave up least so far: a newcomer can take one slot per
        // set only, so the slots it needs must come from as many different sets.
        let mut held: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (p, set) in sets.iter().enumerate() {
            for (i, s) in set.iter().enumerate() {
                if let Some(s) = s {
                    held.entry(by_id[s.node.as_str()].id.as_str()).or_default().push((p, i));
                }
            }
        }
        let mut given_up = vec![0u32; partitions as usize];
        for (id, mut slots) in held {
            let excess = (slots.len() as u64).saturating_sub(share[id]) as usize;
            if excess > 0 {
                slots.sort_by_key(|&(p, _)| (given_up[p], mix(p, id)));
                for &(p, i) in &slots[..excess] {
                    given_up[p] += 1;
                    sets[p][i] = None;
                }
            }
        }
        for set in &sets {
            for s in set.iter().flatten() {
                *load.get_mut(by_id[s.node.as_str()].id.as_str()).expect("known node") += 1;
                *drive_load.entry((by_id[s.node.as_str()].id.as_str(), s.drive)).or_default() += 1;
            }
        }
    }

    // 2. Fill the empty slots.
    for (p, set) in sets.iter_mut().enumerate() {
        for i in 0..n {
            if set[i].is_some() {
                continue;
            }
            let mut zone_count: HashMap<&str, usize> = HashMap::new();
            for s in set.iter().flatten() {
                *zone_count.entry(by_id[s.node.as_str()].zone.as_str()).or_default() += 1;
            }
            let eligible = |node: &&NodeSpec| {
                !set.iter().flatten().any(|s| s.node == node.id)
                    && zone_count.get(node.zone.as_str()).copied().unwrap_or(0) < zone_cap
            };
            // Furthest below its share first (load/share compared without division);
            // a node at or over its share only when no other is eligible.
            let pick = nodes
                .iter()
                .filter(eligible)
                .min_by(|a, b| {
                    let (la, sa) = (load[a.id.as_str()], share[a.id.as_str()].max(1));
                    let (lb, sb) = (load[b.id.as_str()], share[b.id.as_str()].max(1));
                    (la * sb)
                        .cmp(&(lb * sa))
                        .then_with(|| mix(p, &a.id).cmp(&mix(p, &b.id)))
                        .then_with(|| a.id.cmp(&b.id))
                })
                .expect("the zone cap leaves an eligible node for every slot");
            let id = pick.id.as_str();
            let drive = (0..pick.drives)
                .min_by_key(|d| (drive_load.get(&(id, *d)).copied().unwrap_or(0), *d))
                .expect("a node has drives");
            *load.get_mut(id).expect("known node") += 1;
            *drive_load.entry((id, drive)).or_default() += 1;
            set[i] = Some(Slot { node: pick.id.clone(), drive });
        }
    }
    Ok(Placement {
        version,
        k,
        m,
        sets: sets.into_iter().map(|s| s.into_iter().map(|x| x.expect("every slot filled")).collect()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(count: usize, zones: usize, drives: u32) -> Vec<NodeSpec> {
        (0..count)
            .map(|i| NodeSpec { id: format!("node-{i}"), zone: format!("z{}", i % zones.max(1)), drives })
            .collect()
    }

    /// The invariants every placement must hold.
    fn check(p: &Placement, nodes: &[NodeSpec]) {
        let n = p.n();
        let zone_cap = zone_cap(nodes, n);
        for (i, set) in p.sets.iter().enumerate() {
            assert_eq!(set.len(), n);
            let mut seen = std::collections::BTreeSet::new();
            let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
            for s in set {
                let node = nodes.iter().find(|x| x.id == s.node).expect("slot on a known node");
                assert!(s.drive < node.drives, "set {i}: drive {} out of range", s.drive);
                assert!(seen.insert(&s.node), "set {i}: node {} twice", s.node);
                *per_zone.entry(&node.zone).or_default() += 1;
            }
            assert!(per_zone.values().all(|&c| c <= zone_cap), "set {i}: zones {per_zone:?} cap {zone_cap}");
        }
    }

    /// Every node's load is within one slot of its share of `total` by drives.
    fn check_balance(p: &Placement, nodes: &[NodeSpec]) {
        let total = (p.sets.len() * p.n()) as f64;
        let drives: u32 = nodes.iter().map(|x| x.drives).sum();
        let load = p.load();
        for node in nodes {
            let share = total * node.drives as f64 / drives as f64;
            let got = *load.get(node.id.as_str()).unwrap_or(&0) as f64;
            assert!((got - share).abs() <= 1.0, "{} holds {got}, share {share:.1}", node.id);
        }
    }

    #[test]
    fn nine_nodes_six_plus_three_is_balanced_and_distinct() {
        let ns = nodes(9, 1, 4);
        let p = compute(None, &ns, 256, 6, 3).unwrap();
        assert_eq!(p.version, 1);
        check(&p, &ns);
        check_balance(&p, &ns);
        // Drives of a node share its slots evenly.
        let mut per_drive: BTreeMap<(&str, u32), usize> = BTreeMap::new();
        for s in p.sets.iter().flatten() {
            *per_drive.entry((s.node.as_str(), s.drive)).or_default() += 1;
        }
        let (lo, hi) = (per_drive.values().min().unwrap(), per_drive.values().max().unwrap());
        assert!(hi - lo <= 1, "drive loads {lo}..{hi}");
    }

    #[test]
    fn same_inputs_same_placement() {
        let ns = nodes(12, 3, 2);
        assert_eq!(compute(None, &ns, 64, 6, 3).unwrap(), compute(None, &ns, 64, 6, 3).unwrap());
    }

    #[test]
    fn zones_bound_each_set() {
        // 3 zones of 4 nodes, sets of 9: at most 3 slots per zone, so a zone lost
        // costs each set exactly m.
        let ns = nodes(12, 3, 1);
        let p = compute(None, &ns, 128, 6, 3).unwrap();
        check(&p, &ns);
        check_balance(&p, &ns);
    }

    #[test]
    fn an_added_node_takes_its_share_and_nothing_else_moves() {
        let ns = nodes(9, 1, 1);
        let p1 = compute(None, &ns, 256, 6, 3).unwrap();
        let mut ns2 = ns.clone();
        ns2.push(NodeSpec { id: "node-9".into(), zone: "z0".into(), drives: 1 });
        let p2 = compute(Some(&p1), &ns2, 256, 6, 3).unwrap();
        assert_eq!(p2.version, 2);
        check(&p2, &ns2);
        check_balance(&p2, &ns2);
        let moved = p2.moved_slots(&p1);
        let newcomer = p2.load()["node-9"];
        // Every moved slot went to the newcomer: the minimum possible.
        assert_eq!(moved, newcomer, "moved {moved}, newcomer holds {newcomer}");
        assert!((newcomer as i64 - 230).abs() <= 1, "share 256 x 9 / 10 = 230.4, got {newcomer}");
    }

    #[test]
    fn a_removed_node_moves_only_its_slots() {
        let ns = nodes(10, 1, 1);
        let p1 = compute(None, &ns, 256, 6, 3).unwrap();
        let gone = "node-4";
        let held = p1.load()[gone];
        let ns2: Vec<NodeSpec> = ns.iter().filter(|x| x.id != gone).cloned().collect();
        let p2 = compute(Some(&p1), &ns2, 256, 6, 3).unwrap();
        check(&p2, &ns2);
        check_balance(&p2, &ns2);
        assert_eq!(p2.moved_slots(&p1), held, "only the {held} slots of the removed node move");
    }

    #[test]
    fn bigger_nodes_take_more() {
        let mut ns = nodes(9, 1, 2);
        ns[0].drives = 8;
        let p = compute(None, &ns, 256, 6, 3).unwrap();
        check(&p, &ns);
        // node-0's share is 256 x 9 x 8/24 = 768, more than 256 sets can give it
        // with one slot per set: it holds one slot of every set, the rest balance.
        assert_eq!(p.load()["node-0"], 256);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let ns = nodes(8, 1, 1);
        assert_eq!(compute(None, &ns, 16, 6, 3), Err(PlacementError::TooFewNodes { nodes: 8, n: 9 }));
        assert!(matches!(compute(None, &nodes(9, 1, 1), 16, 0, 3), Err(PlacementError::BadCode { .. })));
        assert!(matches!(compute(None, &nodes(9, 1, 1), 0, 6, 3), Err(PlacementError::BadPartitions(0))));
        let mut dup = nodes(9, 1, 1);
        dup[8].id = "node-0".into();
        assert_eq!(compute(None, &dup, 16, 6, 3), Err(PlacementError::DuplicateNode("node-0".into())));
        let mut empty = nodes(9, 1, 1);
        empty[3].drives = 0;
        assert_eq!(compute(None, &empty, 16, 6, 3), Err(PlacementError::NoDrives("node-3".into())));
    }

    /// Random membership changes (seeded): every step keeps the invariants, and
    /// moves no more than the slots of departed nodes plus newcomers' shares plus
    /// what rebalancing drive counts needs, bounded here by a third of all slots.
    #[test]
    fn random_churn_keeps_the_invariants() {
        use rand::{Rng, SeedableRng};
        let seed = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7u64);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut ns = nodes(10, 3, 2);
        let mut next_id = ns.len();
        let mut p = compute(None, &ns, 128, 6, 3).unwrap();
        check(&p, &ns);
        for step in 0..40 {
            let before = p.clone();
            if rng.gen_bool(0.5) && ns.len() > 9 {
                let victim = rng.gen_range(0..ns.len());
                ns.remove(victim);
            } else {
                ns.push(NodeSpec {
                    id: format!("node-{next_id}"),
                    zone: format!("z{}", rng.gen_range(0..3)),
                    drives: rng.gen_range(1..5),
                });
                next_id += 1;
            }
            p = compute(Some(&before), &ns, 128, 6, 3).unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            check(&p, &ns);
            assert_eq!(p.version, before.version + 1);
            let moved = p.moved_slots(&before);
            assert!(moved <= 128 * 9 / 3, "seed {seed} step {step}: {moved} of {} slots moved", 128 * 9);
        }
    }

    #[test]
    fn a_changed_code_starts_over() {
        let ns = nodes(10, 1, 1);
        let p1 = compute(None, &ns, 32, 6, 3).unwrap();
        let p2 = compute(Some(&p1), &ns, 32, 4, 2).unwrap();
        assert_eq!(p2.n(), 6);
        assert_eq!(p2.version, 2, "versions only grow");
        check(&p2, &ns);
    }
}
