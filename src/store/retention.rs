//! The read side of retention: finding, without blocking anyone, the requests the writer may
//! purge and the dedupe claims whose window has passed. The writer checks each again when it
//! purges, against the state of the moment, so what changed in between is kept.

use std::collections::HashMap;

use super::event_record::EventRecord;
use super::request_record::RequestRecord;
use super::{codec, keys, Result, Store};
use crate::domain::dedupe::DedupeClaim;
use crate::domain::{retention, RequestId, SourceId, TeamId, Timestamp};

/// Requests looked at per call, purgeable or not: a call is short however much is kept.
const EXAMINED_PER_CALL: usize = 2_000;

/// What one call found, and where the next one goes on.
pub struct Candidates<T> {
    pub found: Vec<T>,
    pub resume: Option<Vec<u8>>,
}

impl Store {
    /// Requests created before `cutoff` whose every event is purgeable, from the key `from`
    /// on (every team's, oldest first within a team). Blocking.
    pub fn purge_candidates(
        &self,
        cutoff: Timestamp,
        from: Option<Vec<u8>>,
    ) -> Result<Candidates<(TeamId, RequestId)>> {
        let tree = &self.inner.tree;
        let mut start = from.unwrap_or_else(|| keys::REQUEST.to_vec());
        let mut found = Vec::new();
        let mut examined = 0;
        'teams: loop {
            for item in tree.range(start.clone()..) {
                let (key, value) = item?;
                if !key.starts_with(keys::REQUEST) {
                    break 'teams;
                }
                examined += 1;
                if examined > EXAMINED_PER_CALL {
                    return Ok(Candidates {
                        found,
                        resume: Some(key.to_vec()),
                    });
                }
                let record: RequestRecord = codec::decode(&value)?;
                let request = &record.request;
                if request.created_at >= cutoff {
                    // The rest of this team's requests are newer: on to the next team.
                    start = keys::request_team_prefix(&request.team_id);
                    start.push(0xff);
                    continue 'teams;
                }
                let mut purgeable = true;
                for event_id in &request.event_ids {
                    if let Some(bytes) = tree.get(keys::event(&request.team_id, event_id))? {
                        let event = codec::decode::<EventRecord>(&bytes)?.event;
                        if !retention::purgeable(&event, cutoff) {
                            purgeable = false;
                            break;
                        }
                    }
                }
                if purgeable {
                    found.push((request.team_id.clone(), request.id.clone()));
                }
            }
            break;
        }
        Ok(Candidates {
            found,
            resume: None,
        })
    }

    /// Dedupe claims whose window has passed at `now` (or whose source, or its dedupe, is
    /// gone), from the key `from` on, with the time each was made. Blocking.
    pub fn expired_claims(
        &self,
        now: Timestamp,
        from: Option<Vec<u8>>,
    ) -> Result<Candidates<(Vec<u8>, Timestamp)>> {
        let tree = &self.inner.tree;
        let start = from.unwrap_or_else(|| keys::DEDUPE.to_vec());
        let mut windows: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
        let mut found = Vec::new();
        for (examined, item) in tree.range(start..).enumerate() {
            let (key, value) = item?;
            if !key.starts_with(keys::DEDUPE) {
                break;
            }
            if examined >= EXAMINED_PER_CALL {
                return Ok(Candidates {
                    found,
                    resume: Some(key.to_vec()),
                });
            }
            let source = key[keys::DEDUPE.len()..]
                .split(|b| *b == b'/')
                .next()
                .unwrap_or_default()
                .to_vec();
            let window = match windows.get(&source) {
                Some(w) => *w,
                None => {
                    let w = std::str::from_utf8(&source)
                        .ok()
                        .and_then(|s| SourceId::parse(s).ok())
                        .map(|id| self.source(&id))
                        .transpose()?
                        .flatten()
                        .and_then(|s| s.dedupe)
                        .map(|d| d.window_ms());
                    windows.insert(source, w);
                    w
                }
            };
            let claim: DedupeClaim = codec::decode(&value)?;
            if window.is_none_or(|w| !claim.covers(now, w)) {
                found.push((key.to_vec(), claim.at));
            }
        }
        Ok(Candidates {
            found,
            resume: None,
        })
    }
}
