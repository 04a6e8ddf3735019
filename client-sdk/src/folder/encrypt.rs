//! Encrypting a folder: the first run, and later runs that encrypt only what changed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::blob::{Blobs, Snapshot};
use super::error::{Error, Result};
use super::keys::{BlobKeyRoot, FileId};
use super::manifest::{Entry, EntryKind, FileMeta, Manifest};
use super::scan::{Scan, ScannedKind, absolute, scan};
use super::store::{Store, check_overlap, sync_dir};
use super::task::{Progress, for_each_parallel};
use super::{FolderOptions, FolderReport};
use crate::cache::{CachedDataKey, DataKeySource};
use crate::stream::{self, EncryptOptions, FileKey, KeySlot, KmsSlot, RecoverySlot};

/// A destination checked and locked for an encryption, with the header of its manifest when
/// an earlier encryption wrote one.
#[derive(Debug)]
pub(super) struct Prepared {
    source: PathBuf,
    store: Store,
    /// Holds the advisory lock on the destination until the run ends.
    _lock: File,
    previous: Option<stream::Header>,
}

impl Prepared {
    pub(super) fn previous_header(&self) -> Option<&stream::Header> {
        self.previous.as_ref()
    }

    pub(super) fn manifest_path(&self) -> PathBuf {
        self.store.manifest_path()
    }
}

/// Folder key and the `kmsd` slot that wraps it.
#[derive(Debug)]
pub(super) struct FolderKey {
    key: FileKey,
    kms_slot: KmsSlot,
}

/// Checks the folders, locks the destination and reads the header of an existing manifest.
pub(super) fn prepare(source: &Path, destination: &Path) -> Result<Prepared> {
    let metadata =
        std::fs::metadata(source).map_err(|err| Error::io("read the metadata of", source, err))?;
    if !metadata.is_dir() {
        return Err(Error::SourceNotFolder {
            path: source.to_owned(),
        });
    }
    check_overlap(source, destination)?;
    let store = Store::new(destination);
    store.prepare_destination()?;
    let lock = store.lock()?;
    let previous = match store.read_manifest_header() {
        Ok(header) => Some(header),
        Err(Error::ManifestMissing { .. }) => None,
        Err(err) => return Err(err),
    };
    Ok(Prepared {
        source: source.to_owned(),
        store,
        _lock: lock,
        previous,
    })
}

/// Generates the folder key of a first encryption: the one `kmsd` call of the run.
pub(super) async fn new_key<S: DataKeySource>(
    source: &S,
    options: &FolderOptions,
    manifest: &Path,
) -> Result<FolderKey> {
    let data_key = source
        .new_data_key(&options.key_name, &options.context)
        .await
        .map_err(|source| Error::Kms {
            action: "generate",
            source: Box::new(source),
        })?;
    let slot = KmsSlot::new(
        data_key.key_id(),
        data_key.key_version(),
        data_key.ciphertext().to_vec(),
    );
    // Only a key id or blob that the daemon would never return fails here.
    let kms_slot = slot.map_err(|source| Error::Encrypt {
        path: manifest.to_owned(),
        source: Box::new(source),
    })?;
    Ok(FolderKey {
        key: file_key(&data_key)?,
        kms_slot,
    })
}

/// Unwraps the folder key of an earlier encryption from its manifest header: the one `kmsd`
/// call of an incremental run. The context and key name must be the ones the folder has.
pub(super) async fn existing_key<S: DataKeySource>(
    source: &S,
    header: &stream::Header,
    options: &FolderOptions,
    manifest: &Path,
) -> Result<FolderKey> {
    if *header.context() != options.context {
        return Err(Error::ContextChanged {
            path: manifest.to_owned(),
        });
    }
    let slot = header.kms_slot().ok_or_else(|| Error::NoKmsSlot {
        path: manifest.to_owned(),
    })?;
    let data_key = source
        .decrypt_data_key(slot.blob(), &options.context)
        .await
        .map_err(|source| Error::Kms {
            action: "decrypt",
            source: Box::new(source),
        })?;
    if data_key.key_name() != options.key_name {
        return Err(Error::KeyNameChanged {
            path: manifest.to_owned(),
            stored: data_key.key_name().to_owned(),
            requested: options.key_name.clone(),
        });
    }
    Ok(FolderKey {
        key: file_key(&data_key)?,
        kms_slot: slot.clone(),
    })
}

/// Copies the plaintext of a data key into a file key.
pub(super) fn file_key(data_key: &CachedDataKey) -> Result<FileKey> {
    FileKey::try_from(data_key.plaintext()).map_err(|_| Error::InvalidDataKey {
        len: data_key.plaintext().expose_secret().len(),
    })
}

/// One file to encrypt into a new blob.
#[derive(Debug)]
struct Job {
    id: FileId,
    source: PathBuf,
    snapshot: Snapshot,
}

/// New manifest's entries and the files whose contents need a new blob.
#[derive(Debug, Default)]
struct Plan {
    entries: Vec<Entry>,
    jobs: Vec<Job>,
    report: FolderReport,
}

/// Encrypts what changed since the previous manifest, writes the new manifest, and removes
/// the blobs it no longer lists.
///
/// New blobs are synced before the manifest that lists them is renamed into place, and old
/// blobs are removed only after that. A crash at any point therefore leaves the old manifest
/// or the new one, each with all of its blobs. The next run removes blobs that a crash orphans.
pub(super) fn run(
    prepared: Prepared,
    folder_key: FolderKey,
    options: &FolderOptions,
    progress: &Progress,
) -> Result<FolderReport> {
    let store = &prepared.store;
    let previous = match &prepared.previous {
        Some(_) => Some(store.read_manifest(&folder_key.key)?),
        None => None,
    };
    progress.check()?;
    let scan = scan(&prepared.source)?;
    let plan = plan(&prepared.source, store, &scan, previous.as_ref())?;
    let slots = manifest_slots(
        &folder_key,
        options,
        prepared.previous.as_ref(),
        store.manifest_path(),
    )?;
    let blob_root = match previous {
        Some(manifest) => manifest.blob_root,
        None => BlobKeyRoot::generate()?,
    };

    let blobs = Blobs {
        store,
        root: &blob_root,
    };
    let blob_options = EncryptOptions::new()
        .with_segment_size(options.effective_segment_size())
        .with_slot_area_len(0);
    let encrypted = for_each_parallel(&plan.jobs, |job, buffer| {
        blobs.encrypt(
            job.id,
            &job.source,
            job.snapshot,
            blob_options,
            buffer,
            progress,
        )
    });
    if let Err(err) = encrypted.and_then(|()| sync_new_blobs(store, &plan.jobs)) {
        remove_new_blobs(store, &plan.jobs);
        return Err(err);
    }

    let manifest = Manifest {
        blob_root,
        root_mode: scan.root_mode,
        root_mtime: scan.root_mtime,
        entries: plan.entries,
    };
    let context = &options.context;
    store.write_manifest(
        &manifest,
        &folder_key.key,
        context,
        slots,
        options.effective_segment_size(),
    )?;
    let listed: HashSet<FileId> = manifest.files().map(|(_, meta)| meta.id).collect();
    store.remove_unlisted(&listed)?;
    Ok(plan.report)
}

/// Builds the new entries, reusing the blob of every file whose size, modification time, mode
/// and inode are as the previous manifest lists them and whose blob still exists.
fn plan(root: &Path, store: &Store, scan: &Scan, previous: Option<&Manifest>) -> Result<Plan> {
    let previous_files: HashMap<&[u8], (&Entry, &FileMeta)> = previous
        .into_iter()
        .flat_map(Manifest::files)
        .map(|(entry, meta)| (entry.path.as_slice(), (entry, meta)))
        .collect();
    let mut plan = Plan::default();
    let mut current_files = HashSet::new();
    for scanned in &scan.entries {
        let kind = match &scanned.kind {
            ScannedKind::Dir => {
                plan.report.directories += 1;
                EntryKind::Dir
            }
            ScannedKind::Symlink { target } => {
                plan.report.symlinks += 1;
                EntryKind::Symlink {
                    target: target.clone(),
                }
            }
            &ScannedKind::File { size, inode } => {
                plan.report.files += 1;
                current_files.insert(scanned.path.as_slice());
                let unchanged =
                    previous_files
                        .get(scanned.path.as_slice())
                        .filter(|(old, meta)| {
                            meta.size == size
                                && meta.inode == inode
                                && old.mode == scanned.mode
                                && old.mtime == scanned.mtime
                                && store.blob_path(meta.id).is_file()
                        });
                let id = match unchanged {
                    Some((_, meta)) => {
                        plan.report.unchanged += 1;
                        meta.id
                    }
                    None => {
                        let id = FileId::random()?;
                        plan.report.encrypted += 1;
                        plan.report.bytes += size;
                        plan.jobs.push(Job {
                            id,
                            source: absolute(root, &scanned.path),
                            snapshot: Snapshot {
                                size,
                                inode,
                                mtime: scanned.mtime,
                            },
                        });
                        id
                    }
                };
                EntryKind::File(FileMeta { size, inode, id })
            }
        };
        plan.entries.push(Entry {
            path: scanned.path.clone(),
            mode: scanned.mode,
            mtime: scanned.mtime,
            kind,
        });
    }
    plan.report.removed = previous_files
        .keys()
        .filter(|path| !current_files.contains(*path))
        .count() as u64;
    Ok(plan)
}

/// Returns the slots of the new manifest: the `kmsd` slot, then a recovery slot for the
/// recipient in the options. Without one, the recovery slots and unknown slots of the
/// previous manifest are kept, so that a later run without the option keeps recovery working.
fn manifest_slots(
    folder_key: &FolderKey,
    options: &FolderOptions,
    previous: Option<&stream::Header>,
    manifest: PathBuf,
) -> Result<Vec<KeySlot>> {
    let mut slots = vec![KeySlot::Kms(folder_key.kms_slot.clone())];
    match &options.recovery {
        Some(recipient) => {
            let slot = RecoverySlot::wrap(&folder_key.key, recipient).map_err(|source| {
                Error::Encrypt {
                    path: manifest,
                    source: Box::new(source),
                }
            })?;
            slots.push(KeySlot::Recovery(slot));
        }
        None => {
            let kept = previous
                .into_iter()
                .flat_map(stream::Header::slots)
                .filter(|slot| !matches!(slot, KeySlot::Kms(_)));
            slots.extend(kept.cloned());
        }
    }
    Ok(slots)
}

/// Syncs the subfolders that received new blobs, and the folders above them, so that the
/// blobs exist on disk before the manifest that lists them.
fn sync_new_blobs(store: &Store, jobs: &[Job]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let subfolders: HashSet<PathBuf> = jobs.iter().map(|job| store.blob_dir(job.id)).collect();
    for subfolder in &subfolders {
        sync_dir(subfolder)?;
    }
    sync_dir(&store.blobs_path())?;
    sync_dir(store.root())
}

/// Removes the blobs of a failed run, which no manifest lists. Failures are ignored, because
/// the next run removes what is left.
fn remove_new_blobs(store: &Store, jobs: &[Job]) {
    for job in jobs {
        let _ = std::fs::remove_file(store.blob_path(job.id));
    }
}
