//! Seeded, duplicate-aware train / validation / test splits.
//!
//! MODEL.md: 70 % train / 30 % test, then the train part 70 % train / 30 %
//! validation. Near-identical images (see [`super::hash`]) form groups, and a
//! group is always assigned whole, so a copy of a test image can never sit in
//! the training set. Optionally the split is stratified by class: each class
//! (of a group: its most common class) is divided separately, so benign,
//! malignant and normal keep their proportions on every side.
//!
//! Images of one patient (where the data set names patients, as BUS-BRA does)
//! are grouped the same way. Instead of a test fraction, a split can take fold
//! k of K as its test part: the data set's own folds when it ships them
//! (BUS-BRA's `5-fold-cv.csv`), otherwise K stratified folds of whole groups.
//! The rest is divided into training and validation as above (20 % validation,
//! the authors' share, with folds).
//!
//! The result is a JSON file (names per side, seed, fractions) that the trainer
//! writes into its run folder and that evaluation reads back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch::{PhantomSource, SampleSource};
use super::busbra::{id_of, read_test_folds};
use super::hash::{DuplicateRule, Fingerprint, group_by};
use super::layout::{Class, Skipped};
use super::rng::Rng;
use super::synth::phantom_class;
use super::{DataError, Dataset};

/// Version of the split file format.
pub const SPLIT_VERSION: u32 = 1;

/// The validation share of the non-test images when the test part is a fold.
pub const FOLD_VAL_FRACTION: f64 = 0.2;

/// Test fold `k` (1-based) of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub k: u32,
    pub of: u32,
}

impl Fold {
    /// Checks 2 ≤ of and 1 ≤ k ≤ of.
    pub fn new(k: u32, of: u32) -> Result<Fold, DataError> {
        if of < 2 || k == 0 || k > of {
            return Err(DataError::InvalidParameter {
                what: "fold",
                why: format!("fold {k} of {of}: folds are numbered 1 to K, with K ≥ 2"),
            });
        }
        Ok(Fold { k, of })
    }
}

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
    /// Take this fold as the test part instead of `test_fraction`.
    pub fold: Option<Fold>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            seed: 0,
            test_fraction: 0.3,
            val_fraction: 0.3,
            stratify: true,
            duplicates: DuplicateRule::default(),
            fold: None,
        }
    }
}

impl SplitConfig {
    /// The default split with `seed`: 70/30 × 70/30, or test fold `fold` with 20 %
    /// of the rest for validation.
    pub fn new(seed: u64, fold: Option<Fold>) -> SplitConfig {
        SplitConfig {
            seed,
            fold,
            val_fraction: if fold.is_some() {
                FOLD_VAL_FRACTION
            } else {
                0.3
            },
            ..Default::default()
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
    /// Items with the same group (patient) always go to the same side.
    pub group: Option<String>,
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
    /// The test part is this fold (then `test_fraction` is 1/K).
    #[serde(default)]
    pub fold: Option<Fold>,
    /// Where the folds come from: the data set's own fold file, or None for
    /// rca-gpu's (stratified, patient- and duplicate-aware).
    #[serde(default)]
    pub folds_from: Option<String>,
    /// Images of one patient were kept on one side.
    #[serde(default)]
    pub grouped_by_patient: bool,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
    /// Images on no side: with a given test fold, training images of a test
    /// image's patient or near-duplicates of a test image.
    #[serde(default)]
    pub excluded: Vec<Skipped>,
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
    by_stratum(items, groups(items, order, cfg), cfg)
}

/// Items that must stay together (one patient, or near-duplicates), as groups
/// of item indices in order of their first name.
fn groups(items: &[SplitItem], order: &[usize], cfg: &SplitConfig) -> Vec<Vec<usize>> {
    let labels = group_by(order.len(), |a, b| {
        let (ia, ib) = (&items[order[a]], &items[order[b]]);
        if let (Some(ga), Some(gb)) = (&ia.group, &ib.group)
            && ga == gb
        {
            return true;
        }
        match (&ia.fingerprint, &ib.fingerprint) {
            (Some(fa), Some(fb)) => fa.near_duplicate(fb, &cfg.duplicates),
            _ => false,
        }
    });
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, &l) in labels.iter().enumerate() {
        groups.entry(l).or_default().push(order[k]);
    }
    groups.into_values().collect()
}

/// Sorts groups into strata by class (one stratum without stratification).
fn by_stratum(
    items: &[SplitItem],
    groups: Vec<Vec<usize>>,
    cfg: &SplitConfig,
) -> Vec<Vec<Vec<usize>>> {
    let mut by_class: BTreeMap<Class, Vec<Vec<usize>>> = BTreeMap::new();
    for g in groups {
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

/// Deals one stratum's groups into `fold.of` folds (largest groups first, each to
/// the fold with the fewest images of this stratum, then of all strata in `totals`,
/// after a seeded shuffle) and returns (fold `fold.k`, the rest).
fn deal(
    groups: &mut [Vec<usize>],
    fold: Fold,
    rng: &mut Rng,
    totals: &mut [usize],
) -> (Vec<usize>, Vec<usize>) {
    rng.shuffle(groups);
    // Stable: equal sizes keep the shuffled order.
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut sizes = vec![0usize; fold.of as usize];
    let (mut held, mut kept) = (Vec::new(), Vec::new());
    for g in groups.iter() {
        let f = (0..sizes.len())
            .min_by_key(|&f| (sizes[f], totals[f]))
            .expect("at least two folds");
        sizes[f] += g.len();
        totals[f] += g.len();
        if f + 1 == fold.k as usize {
            held.extend_from_slice(g);
        } else {
            kept.extend_from_slice(g);
        }
    }
    (held, kept)
}

/// Divides each stratum's groups (in name order) into (train, validation) by
/// `cfg.val_fraction`. When that leaves no validation image although there are
/// two groups or more to train on (a tiny data set, where every stratum rounds
/// down), the smallest training group validates: training needs both.
fn validation(
    items: &[SplitItem],
    strata: Vec<Vec<Vec<usize>>>,
    cfg: &SplitConfig,
) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (k, mut groups) in strata.into_iter().enumerate() {
        let mut rng = Rng::from_parts(&[cfg.seed, k as u64, 2]);
        let (v, tr) = divide(&mut groups, cfg.val_fraction, &mut rng);
        val.extend(v);
        train.push(
            groups
                .into_iter()
                .filter(|g| tr.contains(&g[0]))
                .collect::<Vec<_>>(),
        );
    }
    let mut train: Vec<Vec<usize>> = train.into_iter().flatten().collect();
    if val.is_empty() && cfg.val_fraction > 0.0 && train.len() >= 2 {
        train.sort_by(|a, b| items[a[0]].name.cmp(&items[b[0]].name));
        let smallest = (0..train.len())
            .min_by_key(|&g| train[g].len())
            .expect("two groups");
        val = train.remove(smallest);
    }
    (train.into_iter().flatten().collect(), val)
}

/// Checks the settings and the names; returns item indices in name order.
fn check_items(items: &[SplitItem], cfg: &SplitConfig) -> Result<Vec<usize>, DataError> {
    check_fraction("test fraction", cfg.test_fraction)?;
    check_fraction("validation fraction", cfg.val_fraction)?;
    if let Some(f) = cfg.fold {
        Fold::new(f.k, f.of)?;
    }
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
    Ok(order)
}

fn sorted_names(items: &[SplitItem], idx: Vec<usize>) -> Vec<String> {
    let mut n: Vec<String> = idx.into_iter().map(|i| items[i].name.clone()).collect();
    n.sort();
    n
}

/// Splits items into train / validation / test: the test part by
/// `cfg.test_fraction`, or fold `cfg.fold` of rca-gpu's own folds.
pub fn make_split(items: &[SplitItem], cfg: &SplitConfig) -> Result<Split, DataError> {
    let order = check_items(items, cfg)?;
    let mut test = Vec::new();
    let mut rest_strata = Vec::new();
    let mut fold_sizes = vec![0usize; cfg.fold.map_or(0, |f| f.of as usize)];
    for (k, mut groups) in strata(items, &order, cfg).into_iter().enumerate() {
        // Separate streams per stratum and per stage: adding a class does not
        // reshuffle the others.
        let mut rng = Rng::from_parts(&[cfg.seed, k as u64, 1]);
        let (t, rest) = match cfg.fold {
            None => divide(&mut groups, cfg.test_fraction, &mut rng),
            Some(f) => deal(&mut groups, f, &mut rng, &mut fold_sizes),
        };
        test.extend(t);
        // Re-form the remaining groups for the second stage.
        let rest: BTreeSet<usize> = rest.into_iter().collect();
        let mut rest_groups: Vec<Vec<usize>> = groups
            .into_iter()
            .filter(|g| rest.contains(&g[0]))
            .collect();
        // Back to name order (item indices follow the caller's listing order).
        rest_groups.sort_by(|a, b| items[a[0]].name.cmp(&items[b[0]].name));
        rest_strata.push(rest_groups);
    }
    let (train, val) = validation(items, rest_strata, cfg);
    Ok(Split {
        version: SPLIT_VERSION,
        seed: cfg.seed,
        test_fraction: cfg.fold.map_or(cfg.test_fraction, |f| 1.0 / f.of as f64),
        val_fraction: cfg.val_fraction,
        stratified: cfg.stratify,
        duplicates: cfg.duplicates,
        fold: cfg.fold,
        folds_from: None,
        grouped_by_patient: items.iter().any(|i| i.group.is_some()),
        train: sorted_names(items, train),
        val: sorted_names(items, val),
        test: sorted_names(items, test),
        excluded: Vec::new(),
    })
}

/// Splits items whose test part is given (`is_test`, e.g. the authors' fold):
/// the rest is divided into training and validation by `cfg.val_fraction`, whole
/// groups and stratified. A group with members on both sides of the given test
/// part keeps its test members; its others are excluded (listed with the reason),
/// so no patient and no near-copy of a test image is trained on.
pub fn make_split_with_test(
    items: &[SplitItem],
    cfg: &SplitConfig,
    is_test: &dyn Fn(&SplitItem) -> bool,
    folds_from: String,
) -> Result<Split, DataError> {
    let order = check_items(items, cfg)?;
    let (mut test, mut excluded, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for g in groups(items, &order, cfg) {
        let (t, o): (Vec<usize>, Vec<usize>) = g.iter().partition(|&&i| is_test(&items[i]));
        if t.is_empty() {
            rest.push(g);
            continue;
        }
        let first = &items[t[0]];
        for &i in &o {
            let same_patient = items[i].group.is_some() && items[i].group == first.group;
            excluded.push(Skipped {
                file: items[i].name.clone(),
                reason: if same_patient {
                    format!("same patient as the test image {}", first.name)
                } else {
                    format!(
                        "near-duplicate (or same patient) of the test image {}",
                        first.name
                    )
                },
            });
        }
        test.extend(t);
    }
    let (train, val) = validation(items, by_stratum(items, rest, cfg), cfg);
    excluded.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(Split {
        version: SPLIT_VERSION,
        seed: cfg.seed,
        test_fraction: test.len() as f64 / items.len().max(1) as f64,
        val_fraction: cfg.val_fraction,
        stratified: cfg.stratify,
        duplicates: cfg.duplicates,
        fold: cfg.fold,
        folds_from: Some(folds_from),
        grouped_by_patient: items.iter().any(|i| i.group.is_some()),
        train: sorted_names(items, train),
        val: sorted_names(items, val),
        test: sorted_names(items, test),
        excluded,
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
                group: s.patient.clone(),
            })
            .collect()
    }

    /// A fresh split of this data set. With `cfg.fold`, the data set's own fold
    /// file for that many folds is used when it has one (BUS-BRA's
    /// `5-fold-cv.csv`: `kFold` of an image's stem); otherwise rca-gpu's folds.
    pub fn split(&self, cfg: &SplitConfig) -> Result<Split, DataError> {
        let items = self.split_items();
        let Some(fold) = cfg.fold else {
            return make_split(&items, cfg);
        };
        let Some((_, path)) = self.fold_files.iter().find(|(n, _)| *n == fold.of) else {
            return make_split(&items, cfg);
        };
        let folds = read_test_folds(path, fold.of)?;
        if let Some(s) = self
            .samples
            .iter()
            .find(|s| !folds.contains_key(&id_of(&s.name)))
        {
            return Err(DataError::MissingMetadata {
                image: self.root.join(&s.name),
                table: path.clone(),
            });
        }
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        make_split_with_test(
            &items,
            cfg,
            &|it| folds.get(&id_of(&it.name)) == Some(&fold.k),
            file,
        )
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
                group: None,
            })
            .collect()
    }

    /// A split of the phantoms.
    pub fn split(&self, cfg: &SplitConfig) -> Result<Split, DataError> {
        make_split(&self.split_items(), cfg)
    }
}

impl Split {
    /// One line: how the split was made and the size of each side.
    pub fn describe(&self) -> String {
        let how = match (&self.fold, &self.folds_from) {
            (Some(f), Some(file)) => format!("test fold {} of {} from {file}", f.k, f.of),
            (Some(f), None) => format!("test fold {} of {} (rca-gpu's folds)", f.k, f.of),
            _ => format!("{:.0} % test", 100.0 * self.test_fraction),
        };
        let mut out = format!(
            "split (seed {}, {how}{}): {} train, {} validation, {} test",
            self.seed,
            if self.grouped_by_patient {
                ", patients kept together"
            } else {
                ""
            },
            self.train.len(),
            self.val.len(),
            self.test.len()
        );
        if !self.excluded.is_empty() {
            out += &format!(
                ", {} excluded (a test image's patient or near-duplicate)",
                self.excluded.len()
            );
        }
        out
    }

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
        // Excluded images are accounted for, not new.
        for e in &self.excluded {
            if let Some(&i) = index.get(e.file.as_str()) {
                used[i] = true;
            }
        }
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
                group: None,
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
