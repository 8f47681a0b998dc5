//! The connection side of calculations: a client's messages keep their
//! order around a calculation.
//!
//! Policy: while a client's calculation runs, its later chat messages wait
//! here (at most [`MAX_HELD`]; beyond that the client is told `calc_busy`)
//! and go out after the calculation's own message, in the order written.
//! Every message goes to the room it was written in: if the client joins
//! another room meanwhile, the calculation's result and the messages held
//! behind it still appear in the old room (under the sender's name), and
//! what the client writes in the new room waits its turn behind them.
//!
//! Plain data with no sockets and no actors: the room type `R` is whatever
//! the caller addresses messages with, and [`Calculations`] is how a
//! calculation is submitted, so the policy is unit-tested on its own.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actorchat_calc::Parsed;
use actorchat_protocol::{CalcResult, CalcStatus};
use tokio::sync::oneshot;

use super::{CancelFlag, CancelOnDrop, Work, result_without_value};

/// Messages held behind a running calculation before `calc_busy`.
pub(crate) const MAX_HELD: usize = 16;

/// A chat message as the client sent it (validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chat {
    pub text: String,
    pub client_id: Option<String>,
    pub sent_at: Option<u64>,
}

/// A message to send now: to `room`, with `calc` if it was a calculation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Release<R> {
    pub room: R,
    pub chat: Chat,
    pub calc: Option<CalcResult>,
}

/// How a calculation is started: hands back where its result will arrive.
/// Dropping the returned [`CancelOnDrop`] cancels the calculation.
pub(crate) trait Calculations {
    fn submit(&mut self, expr: &str, work: Work) -> Submitted;
}

pub(crate) struct Submitted {
    pub result: oneshot::Receiver<CalcResult>,
    pub cancel: CancelOnDrop,
}

impl Submitted {
    /// A fresh cancel flag and reply channel; the sender goes to the scheduler.
    pub(crate) fn channel() -> (Self, Arc<CancelFlag>, oneshot::Sender<CalcResult>) {
        let cancel = Arc::new(CancelFlag::default());
        let (reply, result) = oneshot::channel();
        let submitted = Submitted {
            result,
            cancel: CancelOnDrop(cancel.clone()),
        };
        (submitted, cancel, reply)
    }
}

/// The hold-back queue was full: the message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HoldBackFull;

struct Pending<R> {
    room: R,
    chat: Chat,
    result: oneshot::Receiver<CalcResult>,
    /// Dropping the hold-back (the connection ends) cancels the calculation.
    _cancel: CancelOnDrop,
}

/// One client's calculation in progress and the messages waiting behind it.
/// The pending calculation is boxed: every idle connection carries a
/// `HoldBack`, and a pointer costs it 8 bytes where the inline value would
/// cost about 100.
pub(crate) struct HoldBack<R> {
    pending: Option<Box<Pending<R>>>,
    held: VecDeque<(R, Chat)>,
}

impl<R> Default for HoldBack<R> {
    fn default() -> Self {
        HoldBack {
            pending: None,
            held: VecDeque::new(),
        }
    }
}

impl<R> HoldBack<R> {
    /// Whether a calculation is running (later messages are held).
    #[cfg(test)]
    pub(crate) fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// A chat written in `room`. Returns it if it can go out now; holds it
    /// (or starts its calculation) otherwise.
    pub(crate) fn push(
        &mut self,
        room: R,
        chat: Chat,
        calcs: &mut impl Calculations,
    ) -> Result<Option<Release<R>>, HoldBackFull> {
        if self.pending.is_none() {
            return Ok(self.start(room, chat, calcs));
        }
        if self.held.len() >= MAX_HELD {
            return Err(HoldBackFull);
        }
        self.held.push_back((room, chat));
        Ok(None)
    }

    /// Resolves with the pending calculation's result; never, if there is
    /// none. Cancel-safe: the receiver stays in place until it resolves.
    pub(crate) async fn result(&mut self) -> Result<CalcResult, oneshot::error::RecvError> {
        match &mut self.pending {
            Some(p) => (&mut p.result).await,
            None => std::future::pending().await,
        }
    }

    /// The calculation is done (or its channel closed: the scheduler is
    /// gone): its message, then what was held behind it, up to the next
    /// calculation, which starts.
    pub(crate) fn on_result(
        &mut self,
        result: Result<CalcResult, oneshot::error::RecvError>,
        calcs: &mut impl Calculations,
    ) -> Vec<Release<R>> {
        let Some(pending) = self.pending.take() else {
            return Vec::new();
        };
        let calc = result.unwrap_or_else(|_| lost_calc(&pending.chat.text));
        let Pending { room, chat, .. } = *pending;
        let mut out = vec![Release {
            room,
            chat,
            calc: Some(calc),
        }];
        while self.pending.is_none() {
            let Some((room, chat)) = self.held.pop_front() else {
                break;
            };
            out.extend(self.start(room, chat, calcs));
        }
        out
    }

    /// Sends a plain chat on, or starts the calculation it asks for.
    fn start(&mut self, room: R, chat: Chat, calcs: &mut impl Calculations) -> Option<Release<R>> {
        let work = match actorchat_calc::parse(&chat.text) {
            Parsed::NotACalculation => {
                return Some(Release {
                    room,
                    chat,
                    calc: None,
                });
            }
            Parsed::Calc(request) => Work::Run(request),
            Parsed::TooLarge(rejection) => Work::Refused(rejection),
        };
        let submitted = calcs.submit(&chat.text, work);
        self.pending = Some(Box::new(Pending {
            room,
            chat,
            result: submitted.result,
            _cancel: submitted.cancel,
        }));
        None
    }
}

/// The result when the scheduler dropped a request (it stopped, failed or
/// was restarting).
fn lost_calc(expr: &str) -> CalcResult {
    result_without_value(
        String::new(),
        expr.to_owned(),
        CalcStatus::Error,
        Duration::ZERO,
        "The calculation service is unavailable; try again.",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Keeps every submitted calculation's reply sender and cancel flag.
    #[derive(Default)]
    struct Fake {
        submitted: Vec<(String, oneshot::Sender<CalcResult>, Arc<CancelFlag>)>,
    }

    impl Calculations for Fake {
        fn submit(&mut self, expr: &str, _work: Work) -> Submitted {
            let (submitted, cancel, reply) = Submitted::channel();
            self.submitted.push((expr.to_owned(), reply, cancel));
            submitted
        }
    }

    fn chat(text: &str) -> Chat {
        Chat {
            text: text.to_owned(),
            client_id: None,
            sent_at: None,
        }
    }

    fn ok(expr: &str) -> CalcResult {
        CalcResult {
            id: "c1".into(),
            expr: expr.into(),
            status: CalcStatus::Ok,
            value: Some("1".into()),
            digits: Some(1),
            truncated: false,
            elapsed_ms: 0,
            reason: None,
        }
    }

    fn texts<R: Copy>(out: &[Release<R>]) -> Vec<(R, &str, bool)> {
        out.iter()
            .map(|r| (r.room, r.chat.text.as_str(), r.calc.is_some()))
            .collect()
    }

    #[test]
    fn plain_chat_goes_straight_through() {
        let mut hb = HoldBack::default();
        let mut calcs = Fake::default();
        let out = hb.push("lobby", chat("hello"), &mut calcs).unwrap();
        assert_eq!(out.map(|r| r.chat.text), Some("hello".to_owned()));
        assert!(!hb.is_waiting());
        assert!(calcs.submitted.is_empty());
    }

    #[tokio::test]
    async fn later_messages_wait_and_follow_the_result_in_order() {
        let mut hb = HoldBack::default();
        let mut calcs = Fake::default();
        assert_eq!(hb.push("lobby", chat("20!"), &mut calcs).unwrap(), None);
        assert!(hb.is_waiting());
        for t in ["a", "b"] {
            assert_eq!(hb.push("lobby", chat(t), &mut calcs).unwrap(), None);
        }
        let (_, reply, _) = calcs.submitted.pop().unwrap();
        reply.send(ok("20!")).unwrap();
        let result = hb.result().await;
        let out = hb.on_result(result, &mut calcs);
        assert_eq!(
            texts(&out),
            [
                ("lobby", "20!", true),
                ("lobby", "a", false),
                ("lobby", "b", false)
            ]
        );
        assert!(!hb.is_waiting());
    }

    #[tokio::test]
    async fn messages_go_to_the_room_they_were_written_in() {
        let mut hb = HoldBack::default();
        let mut calcs = Fake::default();
        hb.push("old", chat("20!"), &mut calcs).unwrap();
        hb.push("old", chat("before the join"), &mut calcs).unwrap();
        // The client joined "new" and writes there while the result is due.
        hb.push("new", chat("after the join"), &mut calcs).unwrap();
        let (_, reply, _) = calcs.submitted.pop().unwrap();
        reply.send(ok("20!")).unwrap();
        let result = hb.result().await;
        let out = hb.on_result(result, &mut calcs);
        assert_eq!(
            texts(&out),
            [
                ("old", "20!", true),
                ("old", "before the join", false),
                ("new", "after the join", false)
            ]
        );
    }

    #[tokio::test]
    async fn a_second_calculation_holds_what_follows_it() {
        let mut hb = HoldBack::default();
        let mut calcs = Fake::default();
        hb.push("r", chat("5!"), &mut calcs).unwrap();
        hb.push("r", chat("6!"), &mut calcs).unwrap();
        hb.push("r", chat("after"), &mut calcs).unwrap();
        let (_, reply, _) = calcs.submitted.remove(0);
        reply.send(ok("5!")).unwrap();
        let result = hb.result().await;
        let out = hb.on_result(result, &mut calcs);
        assert_eq!(texts(&out), [("r", "5!", true)]);
        assert!(hb.is_waiting(), "6! is running now");
        assert_eq!(calcs.submitted.len(), 1);
        let (_, reply, _) = calcs.submitted.remove(0);
        reply.send(ok("6!")).unwrap();
        let result = hb.result().await;
        let out = hb.on_result(result, &mut calcs);
        assert_eq!(texts(&out), [("r", "6!", true), ("r", "after", false)]);
    }

    #[test]
    fn at_most_max_held_messages_wait() {
        let mut hb = HoldBack::default();
        let mut calcs = Fake::default();
        hb.push("r", chat("20!"), &mut calcs).unwrap();
        for i in 0..MAX_HELD {
            assert_eq!(hb.push("r", chat(&format!("m{i}")), &mut calcs), Ok(None));
        }
        assert_eq!(
            hb.push("r", chat("one too many"), &mut calcs),
            Err(HoldBackFull)
        );
    }

    #[tokio::test]
    async fn a_lost_scheduler_answers_error_and_releases_the_rest() {
        let mut hb = HoldBack::default();
        let mut calcs = Fake::default();
        hb.push("r", chat("20!"), &mut calcs).unwrap();
        hb.push("r", chat("next"), &mut calcs).unwrap();
        calcs.submitted.clear(); // the scheduler dropped the request
        let result = hb.result().await;
        let out = hb.on_result(result, &mut calcs);
        assert_eq!(
            out[0].calc.as_ref().map(|c| c.status),
            Some(CalcStatus::Error)
        );
        assert_eq!(texts(&out), [("r", "20!", true), ("r", "next", false)]);
    }

    #[test]
    fn dropping_the_holdback_cancels_the_calculation() {
        let mut hb = HoldBack::default();
        let mut calcs = Fake::default();
        hb.push("r", chat("20!"), &mut calcs).unwrap();
        let cancel = calcs.submitted[0].2.clone();
        assert!(!cancel.is_set());
        drop(hb);
        assert!(cancel.is_set());
    }
}
