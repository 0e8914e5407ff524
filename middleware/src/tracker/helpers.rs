//! The manual `track_*` API of the original design, one call per kind of
//! activity, and the action enums it takes.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::ActivityTracker;
use crate::{Activity, ActivityType};

impl ActivityTracker {
    /// Records a login (`login`), e.g. from a handler that checked the
    /// credentials itself.
    pub fn track_login(
        &self,
        user_id: impl Into<String>,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> bool {
        let mut activity = with_ip(Activity::new(ActivityType::Login).user_id(user_id), ip);
        if let Some(ua) = user_agent {
            activity = activity.user_agent(ua);
        }
        self.track(activity)
    }

    /// Records a logout (`logout`).
    pub fn track_logout(&self, user_id: impl Into<String>, ip: Option<IpAddr>) -> bool {
        self.track(with_ip(
            Activity::new(ActivityType::Logout).user_id(user_id),
            ip,
        ))
    }

    /// Records an action on a case (`case_create`, `case_view`, ...), with
    /// `resource_type = "case"`.
    pub fn track_case_action(
        &self,
        user_id: impl Into<String>,
        action: CaseAction,
        case_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "case",
            case_id,
            details,
            ip,
        )
    }

    /// Records a payment step (`payment_create`, `payment_success`,
    /// `payment_failed`), with `resource_type = "payment"`.
    pub fn track_payment(
        &self,
        user_id: impl Into<String>,
        action: PaymentAction,
        payment_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "payment",
            payment_id,
            details,
            ip,
        )
    }

    /// Records an action on a document (`document_generate`, ...), with
    /// `resource_type = "document"`.
    pub fn track_document_action(
        &self,
        user_id: impl Into<String>,
        action: DocumentAction,
        document_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "document",
            document_id,
            details,
            ip,
        )
    }

    /// Records a withdrawal step (`withdrawal_request`, ...), with
    /// `resource_type = "withdrawal"`.
    pub fn track_withdrawal(
        &self,
        user_id: impl Into<String>,
        action: WithdrawalAction,
        withdrawal_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "withdrawal",
            withdrawal_id,
            details,
            ip,
        )
    }

    /// Records a configuration change (`config_update`), with
    /// `resource_type = "config"` and the setting's key as resource id.
    pub fn track_config_update(
        &self,
        user_id: impl Into<String>,
        config_key: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            ActivityType::ConfigUpdate,
            "config",
            config_key,
            details,
            ip,
        )
    }

    /// Records a profile change (`profile_update`).
    pub fn track_profile_update(
        &self,
        user_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        let activity = Activity::new(ActivityType::ProfileUpdate).user_id(user_id);
        self.track(with_details(with_ip(activity, ip), details))
    }

    /// Records a password change (`password_change`).
    pub fn track_password_change(&self, user_id: impl Into<String>, ip: Option<IpAddr>) -> bool {
        self.track(with_ip(
            Activity::new(ActivityType::PasswordChange).user_id(user_id),
            ip,
        ))
    }

    fn track_resource(
        &self,
        user_id: impl Into<String>,
        action: ActivityType,
        kind: &str,
        id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        let activity = Activity::new(action).user_id(user_id).resource(kind, id);
        self.track(with_details(with_ip(activity, ip), details))
    }
}

fn with_ip(activity: Activity, ip: Option<IpAddr>) -> Activity {
    match ip {
        Some(ip) => activity.ip_address(ip),
        None => activity,
    }
}

/// A JSON object becomes `details`; `null` means none; any other value is
/// kept under `"value"`.
fn with_details(mut activity: Activity, details: Option<Value>) -> Activity {
    activity.details = match details {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => {
            let mut map = Map::new();
            map.insert("value".to_owned(), other);
            Some(map)
        }
    };
    activity
}

macro_rules! action_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $activity:ident,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// The catalogue action it records.
            pub fn activity_type(self) -> ActivityType {
                match self {
                    $($name::$variant => ActivityType::$activity,)*
                }
            }
        }

        impl From<$name> for ActivityType {
            fn from(action: $name) -> ActivityType {
                action.activity_type()
            }
        }
    };
}

action_enum! {
    /// What was done to a case, for [`ActivityTracker::track_case_action`].
    CaseAction {
        /// `case_create`
        Create => CaseCreate,
        /// `case_view`
        View => CaseView,
        /// `case_update`
        Update => CaseUpdate,
        /// `case_delete`
        Delete => CaseDelete,
        /// `case_assign`
        Assign => CaseAssign,
        /// `case_grab`
        Grab => CaseGrab,
        /// `case_complete`
        Complete => CaseComplete,
    }
}

action_enum! {
    /// A payment's step, for [`ActivityTracker::track_payment`].
    PaymentAction {
        /// `payment_create`
        Create => PaymentCreate,
        /// `payment_success`
        Success => PaymentSuccess,
        /// `payment_failed`
        Failed => PaymentFailed,
    }
}

action_enum! {
    /// What was done to a document, for [`ActivityTracker::track_document_action`].
    DocumentAction {
        /// `document_generate`
        Generate => DocumentGenerate,
        /// `document_review`
        Review => DocumentReview,
        /// `document_approve`
        Approve => DocumentApprove,
        /// `document_reject`
        Reject => DocumentReject,
        /// `document_send`
        Send => DocumentSend,
    }
}

action_enum! {
    /// A withdrawal's step, for [`ActivityTracker::track_withdrawal`].
    WithdrawalAction {
        /// `withdrawal_request`
        Request => WithdrawalRequest,
        /// `withdrawal_approve`
        Approve => WithdrawalApprove,
        /// `withdrawal_reject`
        Reject => WithdrawalReject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_enums_map_to_the_catalogue() {
        assert_eq!(CaseAction::Grab.activity_type().as_str(), "case_grab");
        assert_eq!(
            PaymentAction::Failed.activity_type().as_str(),
            "payment_failed"
        );
        assert_eq!(
            DocumentAction::Approve.activity_type().as_str(),
            "document_approve"
        );
        assert_eq!(
            WithdrawalAction::Request.activity_type().as_str(),
            "withdrawal_request"
        );
    }

    #[test]
    fn details_that_are_not_objects_are_wrapped() {
        let a = with_details(Activity::new(ActivityType::Login), Some(Value::from(3)));
        assert_eq!(a.details.unwrap()["value"], 3);
        let a = with_details(Activity::new(ActivityType::Login), Some(Value::Null));
        assert!(a.details.is_none());
    }
}
