//! Prints the rejection sentences and estimates for a few inputs:
//! `cargo run -p actorchat-calc --example reasons -- '1000000000!' '2000000!'`.

use actorchat_calc::{Limits, Parsed, admit, estimate, parse};

fn main() {
    let limits = Limits::default();
    for text in std::env::args().skip(1) {
        match parse(&text) {
            Parsed::NotACalculation => println!("{text}: plain chat"),
            Parsed::TooLarge(rejection) => println!("{text}: {rejection}"),
            Parsed::Calc(req) => match admit(req, &limits) {
                Ok(e) => println!("{text}: admitted, {e:?}"),
                Err(rejection) => println!("{text}: {rejection} [{:?}]", estimate(req).time),
            },
        }
    }
}
