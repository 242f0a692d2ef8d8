"""Realistic music-search queries (hand-written by the project) for load tests and perf_analyzer data."""
from __future__ import annotations

MUSIC_QUERIES = [
    "taylor swift", "love story taylor swift", "lofi hip hop beats to study", "bohemian rhapsody queen",
    "beethoven moonlight sonata", "chill jazz for dinner", "workout playlist 2024", "billie eilish bad guy",
    "songs like blinding lights", "acoustic covers of pop songs", "drake god's plan", "90s rock anthems",
    "rain sounds for sleeping", "kendrick lamar humble", "classical music for focus", "reggaeton hits",
    "the beatles let it be", "sad songs to cry to", "piano instrumental relaxing", "ed sheeran perfect lyrics",
    "best of bob marley", "deep house summer mix", "christmas songs for kids", "arctic monkeys do i wanna know",
    "frank ocean blonde album", "motivational rap songs", "bad bunny new album", "coldplay yellow live",
    "80s synthwave", "road trip country songs", "metallica enter sandman", "k-pop girl groups",
    "adele someone like you", "podcast about true crime", "mozart for babies", "the weeknd starboy",
    "eminem lose yourself", "fleetwood mac dreams", "indie folk morning", "nirvana smells like teen spirit",
    "study music no lyrics", "latin jazz trumpet", "olivia rodrigo drivers license", "hans zimmer interstellar",
    "ambient music for meditation", "guns n roses sweet child o mine", "dua lipa levitating", "vivaldi four seasons",
    "hip hop 2000s throwback", "songs with whistling", "imagine dragons believer", "sza kill bill",
    "french cafe accordion", "miles davis kind of blue", "post malone circles", "top hits this week",
    "lana del rey summertime sadness", "bollywood romantic songs", "stranger things soundtrack", "dance party 2010s",
]
