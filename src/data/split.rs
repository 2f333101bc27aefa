//! Seeded, duplicate-aware train / validation / test splits.
//!
//! MODEL.md: 70 % train / 30 % test, then the train part 70 % train / 30 %
//! validation. Near-identical images (see [`super::hash`]) form groups, and a
//! group is always assigned whole, so a copy of a test image can never sit in
//! the training set. Optionally the split is stratified by class: each class
//! (of a group: its most common class) is divided separately, so benign,
//! malignant and normal keep their proportions on every side.
//!
//! The result is a JSON file (names per side, seed, fractions) that the trainer
//! writes into its run folder and that evaluation reads back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch::{PhantomSource, SampleSource};
use super::hash::{DuplicateRule, Fingerprint, group_by};
use super::layout::Class;
use super::rng::Rng;
use super::synth::phantom_class;
use super::{DataError, Dataset};

/// Version of the split file format.
pub const SPLIT_VERSION: u32 = 1;

/// How to split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitConfig {
    pub seed: u64,
    /// Fraction of all images held out for testing (0.3).
    pub test_fraction: f64,
    /// Fraction of the remaining training images held out for validation (0.3).
    pub val_fraction: f64,
    pub stratify: bool,
    /// When images are treated as duplicates (kept on one side).
    pub duplicates: DuplicateRule,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            seed: 0,
            test_fraction: 0.3,
            val_fraction: 0.3,
            stratify: true,
            duplicates: DuplicateRule::default(),
        }
    }
}

/// What the split needs to know about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitItem {
    pub name: String,
    pub class: Class,
    /// None for items known to be distinct (generated phantoms): never grouped.
    pub fingerprint: Option<Fingerprint>,
}

/// A split: the file names on each side plus the settings that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub version: u32,
    pub seed: u64,
    pub test_fraction: f64,
    pub val_fraction: f64,
    pub stratified: bool,
    pub duplicates: DuplicateRule,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

/// Sample indices of a data set for each side of a split.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitIndices {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    /// Samples of the data set the split file does not mention (new files).
    pub unlisted: Vec<String>,
}

/// Divides groups (each a list of item indices) into (held_out, kept) so that the
/// held-out part has as close to `fraction` of the images as whole groups allow.
fn divide(groups: &mut [Vec<usize>], fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    rng.shuffle(groups);
    let total: usize = groups.iter().map(Vec::len).sum();
    let target = (fraction * total as f64).round() as usize;
    let (mut held, mut kept) = (Vec::new(), Vec::new());
    for g in groups.iter() {
        // Take the group if that brings the held-out count closer to the target.
        let now = held.len().abs_diff(target);
        let after = (held.len() + g.len()).abs_diff(target);
        if after < now {
            held.extend_from_slice(g);
        } else {
            kept.extend_from_slice(g);
        }
    }
    (held, kept)
}

/// Groups item indices into duplicate groups, then into strata (one stratum
/// without stratification). Deterministic: groups are ordered by their first
/// name, strata by class.
fn strata(items: &[SplitItem], order: &[usize], cfg: &SplitConfig) -> Vec<Vec<Vec<usize>>> {
    let labels = group_by(order.len(), |a, b| {
        match (&items[order[a]].fingerprint, &items[order[b]].fingerprint) {
            (Some(fa), Some(fb)) => fa.near_duplicate(fb, &cfg.duplicates),
            _ => false,
        }
    });
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, &l) in labels.iter().enumerate() {
        groups.entry(l).or_default().push(order[k]);
    }
    let mut by_class: BTreeMap<Class, Vec<Vec<usize>>> = BTreeMap::new();
    for (_, g) in groups {
        let class = if cfg.stratify {
            // The group's most common class; ties go to the first in Class order.
            let mut counts: BTreeMap<Class, usize> = BTreeMap::new();
            for &i in &g {
                *counts.entry(items[i].class).or_default() += 1;
            }
            let best = counts.values().copied().max().unwrap_or(0);
            counts
                .into_iter()
                .find(|&(_, n)| n == best)
                .map(|(c, _)| c)
                .unwrap_or(Class::Unlabelled)
        } else {
            Class::Unlabelled
        };
        by_class.entry(class).or_default().push(g);
    }
    by_class.into_values().collect()
}

fn check_fraction(what: &'static str, f: f64) -> Result<(), DataError> {
    if !(0.0..1.0).contains(&f) {
        return Err(DataError::InvalidParameter {
            what,
            why: format!("{f} is not in [0, 1)"),
        });
    }
    Ok(())
}

/// Splits items into train / validation / test.
pub fn make_split(items: &[SplitItem], cfg: &SplitConfig) -> Result<Split, DataError> {
    check_fraction("test fraction", cfg.test_fraction)?;
    check_fraction("validation fraction", cfg.val_fraction)?;
    let mut seen = BTreeSet::new();
    for it in items {
        if !seen.insert(it.name.as_str()) {
            return Err(DataError::InvalidParameter {
                what: "split items",
                why: format!("{} appears twice", it.name),
            });
        }
    }
    // Sort by name so the split depends on the files, not on the listing order.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[a].name.cmp(&items[b].name));

    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for (k, mut groups) in strata(items, &order, cfg).into_iter().enumerate() {
        // Separate streams per stratum and per stage: adding a class does not
        // reshuffle the others.
        let mut rng = Rng::from_parts(&[cfg.seed, k as u64, 1]);
        let (t, rest) = divide(&mut groups, cfg.test_fraction, &mut rng);
        test.extend(t);
        // Re-form the remaining groups for the second stage.
        let rest: BTreeSet<usize> = rest.into_iter().collect();
        let mut rest_groups: Vec<Vec<usize>> = groups
            .into_iter()
            .filter(|g| rest.contains(&g[0]))
            .collect();
        // Back to name order (item indices follow the caller's listing order).
        rest_groups.sort_by(|a, b| items[a[0]].name.cmp(&items[b[0]].name));
        let mut rng = Rng::from_parts(&[cfg.seed, k as u64, 2]);
        let (v, tr) = divide(&mut rest_groups, cfg.val_fraction, &mut rng);
        val.extend(v);
        train.extend(tr);
    }
    let names = |idx: Vec<usize>| {
        let mut n: Vec<String> = idx.into_iter().map(|i| items[i].name.clone()).collect();
        n.sort();
        n
    };
    Ok(Split {
        version: SPLIT_VERSION,
        seed: cfg.seed,
        test_fraction: cfg.test_fraction,
        val_fraction: cfg.val_fraction,
        stratified: cfg.stratify,
        duplicates: cfg.duplicates,
        train: names(train),
        val: names(val),
        test: names(test),
    })
}

impl Dataset {
    /// The split inputs of every sample.
    pub fn split_items(&self) -> Vec<SplitItem> {
        self.samples
            .iter()
            .map(|s| SplitItem {
                name: s.name.clone(),
                class: s.class,
                fingerprint: Some(s.fingerprint.clone()),
            })
            .collect()
    }

    /// A fresh split of this data set.
    pub fn split(&self, cfg: &SplitConfig) -> Result<Split, DataError> {
        make_split(&self.split_items(), cfg)
    }
}

impl PhantomSource {
    /// The split inputs of the phantoms: names and classes; no fingerprints,
    /// because every phantom is distinct by construction.
    pub fn split_items(&self) -> Vec<SplitItem> {
        (0..self.count)
            .map(|i| SplitItem {
                name: self.name(i),
                class: phantom_class(self.seed, i as u64),
                fingerprint: None,
            })
            .collect()
    }

    /// A split of the phantoms.
    pub fn split(&self, cfg: &SplitConfig) -> Result<Split, DataError> {
        make_split(&self.split_items(), cfg)
    }
}

impl Split {
    /// Writes the split as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string_pretty(self).expect("a split always serialises");
        crate::atomic::write(path, text).map_err(|e| DataError::io(path, e))
    }

    /// Reads a split file written by [`Split::save`].
    pub fn load(path: &Path) -> Result<Split, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let split: Split = serde_json::from_str(&text).map_err(|source| DataError::SplitParse {
            path: path.to_path_buf(),
            source,
        })?;
        if split.version != SPLIT_VERSION {
            return Err(DataError::InvalidParameter {
                what: "split file version",
                why: format!(
                    "{} has version {}, this build reads version {SPLIT_VERSION}; re-create the split",
                    path.display(),
                    split.version
                ),
            });
        }
        Ok(split)
    }

    /// Maps the names of the split onto a source's sample indices. Every listed
    /// file must exist in the source (a missing one is an error naming it);
    /// samples the split does not list are returned in `unlisted`.
    /// `split_path` is only used in error messages.
    pub fn resolve(
        &self,
        source: &dyn SampleSource,
        split_path: &Path,
    ) -> Result<SplitIndices, DataError> {
        let names: Vec<String> = (0..source.len()).map(|i| source.name(i)).collect();
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut used = vec![false; names.len()];
        let mut side = |names: &[String]| -> Result<Vec<usize>, DataError> {
            names
                .iter()
                .map(|n| {
                    let &i = index
                        .get(n.as_str())
                        .ok_or_else(|| DataError::SplitMissingFile {
                            split: split_path.to_path_buf(),
                            name: n.clone(),
                            data_set: source.describe(),
                        })?;
                    if used[i] {
                        return Err(DataError::SplitOverlap {
                            split: split_path.to_path_buf(),
                            name: n.clone(),
                        });
                    }
                    used[i] = true;
                    Ok(i)
                })
                .collect()
        };
        let train = side(&self.train)?;
        let val = side(&self.val)?;
        let test = side(&self.test)?;
        let unlisted = names
            .into_iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(n, _)| n)
            .collect();
        Ok(SplitIndices {
            train,
            val,
            test,
            unlisted,
        })
    }
}

/// Convenience: the path of a split file inside a run folder.
pub fn split_path_in(run_dir: &Path) -> PathBuf {
    run_dir.join("split.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<SplitItem> {
        (0..n)
            .map(|i| SplitItem {
                name: format!("img{i:03}.png"),
                class: if i % 3 == 0 {
                    Class::Malignant
                } else {
                    Class::Benign
                },
                // Distinct flat grey levels: never duplicates of each other.
                fingerprint: None,
            })
            .collect()
    }

    #[test]
    fn fractions_follow_the_paper() {
        let s = make_split(
            &items(100),
            &SplitConfig {
                stratify: false,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.test.len(), 30);
        assert_eq!(s.val.len(), 21);
        assert_eq!(s.train.len(), 49);
    }

    #[test]
    fn fraction_out_of_range_is_rejected() {
        let cfg = SplitConfig {
            test_fraction: 1.5,
            ..Default::default()
        };
        assert!(matches!(
            make_split(&items(10), &cfg),
            Err(DataError::InvalidParameter { .. })
        ));
    }
}
