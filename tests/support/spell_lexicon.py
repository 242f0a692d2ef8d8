"""A small Zipf lexicon the guard tests share: known words, a misspelling (swit), a name (weeknd) beside a frequent
neighbour (weekend), and a rare merged form (rockandroll)."""

LEXICON = {
    "taylor": 4.5,
    "swift": 4.2,
    "swit": 1.6,
    "metallica": 3.2,
    "enter": 5.0,
    "sandman": 2.9,
    "the": 7.7,
    "weeknd": 2.7,
    "weekend": 5.1,
    "hits": 4.6,
    "workout": 4.0,
    "he": 6.5,
    "rock": 5.0,
    "and": 7.4,
    "roll": 4.6,
    "fly": 4.7,
    "me": 6.8,
    "to": 7.4,
    "moon": 4.8,
    "sinatra": 3.3,
    "frank": 4.6,
    "rockandroll": 1.0,
}
