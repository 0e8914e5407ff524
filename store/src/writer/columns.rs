//! The batch as the table's columns: normalized ([`crate::normalize`]),
//! without repeated ids, text borrowed from the batch where nothing
//! changes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use activity_tracker::Activity;
use chrono::{DateTime, Utc};
use foldhash::fast::RandomState;
use uuid::Uuid;

use super::StoredEvent;
use crate::normalize::{self, StorageRules, Verdict};

/// The batch as columns, normalized and without repeated ids. Text is
/// borrowed from the batch; only events that normalization changes are
/// copied.
pub(crate) struct Columns<'a> {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) user_ids: Vec<Option<Cow<'a, str>>>,
    pub(crate) actions: Vec<Cow<'a, str>>,
    pub(crate) resource_types: Vec<Option<Cow<'a, str>>>,
    pub(crate) resource_ids: Vec<Option<Cow<'a, str>>>,
    pub(crate) details: Vec<Option<Cow<'a, str>>>,
    pub(crate) ip_addresses: Vec<Option<IpAddr>>,
    pub(crate) user_agents: Vec<Option<Cow<'a, str>>>,
    pub(crate) session_ids: Vec<Option<Cow<'a, str>>>,
    pub(crate) created_ats: Vec<DateTime<Utc>>,
    /// Events not stored because their user was erased by deletion.
    pub(crate) erased: u64,
    /// What normalization did, counted over the events of the batch.
    pub(crate) normalized: Normalized,
}

/// Events of a batch that [`normalize::normalize_event`]'s rules changed,
/// by rule (an event may count under several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Normalized {
    pub(crate) nul: u64,
    pub(crate) numbers: u64,
    pub(crate) clamped: u64,
}

pub(crate) fn details_json(details: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::to_string(details)
        .expect("a JSON object always serializes: string keys, no non-finite floats in Value")
}

impl<'a> Columns<'a> {
    /// `written_at`: the arrival of events that bring none
    /// ([`StoredEvent::arrived_at`]).
    pub(crate) fn from_batch<E: StoredEvent>(
        batch: &'a [E],
        rules: &StorageRules,
        written_at: DateTime<Utc>,
    ) -> Self {
        let n = batch.len();
        // foldhash: SipHash was a visible part of a drain's CPU time.
        let mut seen = HashSet::with_capacity_and_hasher(n, RandomState::default());
        let mut columns = Columns {
            ids: Vec::with_capacity(n),
            user_ids: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            resource_types: Vec::with_capacity(n),
            resource_ids: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            ip_addresses: Vec::with_capacity(n),
            user_agents: Vec::with_capacity(n),
            session_ids: Vec::with_capacity(n),
            created_ats: Vec::with_capacity(n),
            erased: 0,
            normalized: Normalized::default(),
        };
        for event in batch {
            let activity = event.activity();
            if !seen.insert(activity.id) {
                continue;
            }
            let verdict = rules.verdict(activity);
            if verdict == Verdict::Drop {
                columns.erased += 1;
                continue;
            }
            let details = event.details_json();
            let arrival = Some(event.arrived_at().unwrap_or(written_at));
            if verdict != Verdict::AsIs
                || normalize::needs_normalizing(activity, details.as_deref(), arrival)
            {
                let mut owned = activity.clone();
                let changes = normalize::normalize_event(&mut owned, details.as_deref(), arrival);
                columns.normalized.nul += u64::from(changes.nul);
                columns.normalized.numbers += u64::from(changes.numbers);
                columns.normalized.clamped += u64::from(changes.clamped);
                rules.apply(&mut owned, &verdict);
                columns.push_owned(owned);
            } else {
                columns.push_borrowed(activity, details);
            }
        }
        columns
    }

    fn push_borrowed(&mut self, activity: &'a Activity, details: Option<Cow<'a, str>>) {
        let borrow = |text: &'a Option<String>| text.as_deref().map(Cow::Borrowed);
        self.ids.push(activity.id);
        self.user_ids.push(borrow(&activity.user_id));
        self.actions.push(Cow::Borrowed(activity.action.as_str()));
        self.resource_types.push(borrow(&activity.resource_type));
        self.resource_ids.push(borrow(&activity.resource_id));
        self.details.push(details);
        self.ip_addresses.push(activity.ip_address);
        self.user_agents.push(borrow(&activity.user_agent));
        self.session_ids.push(borrow(&activity.session_id));
        self.created_ats.push(activity.created_at);
    }

    fn push_owned(&mut self, activity: Activity) {
        self.ids.push(activity.id);
        self.user_ids.push(activity.user_id.map(Cow::Owned));
        self.actions
            .push(Cow::Owned(activity.action.as_str().to_owned()));
        self.resource_types
            .push(activity.resource_type.map(Cow::Owned));
        self.resource_ids.push(activity.resource_id.map(Cow::Owned));
        self.details.push(
            activity
                .details
                .as_ref()
                .map(|d| Cow::Owned(details_json(d))),
        );
        self.ip_addresses.push(activity.ip_address);
        self.user_agents.push(activity.user_agent.map(Cow::Owned));
        self.session_ids.push(activity.session_id.map(Cow::Owned));
        self.created_ats.push(activity.created_at);
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}
