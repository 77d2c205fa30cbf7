"""The hand-made plan of Metz's centre for the demo: streets, squares, landmarks, cameras.

Approximate and drawn by hand (no survey data): the real geography is kept roughly right
(the cathedral above place d'Armes, the Opéra-Théâtre on its island in the Moselle, place
Saint-Louis, place de la République), and the three officer routes of `../routes` are fitted
exactly: the streets they walk take their vertices. Coordinates are metres in the plane of
`bodycam.geo.geometry.LocalFrame` around ORIGIN (x east, y north); `make_city` converts them.
"""

from __future__ import annotations

from dataclasses import dataclass

ORIGIN = (49.118, 6.176)  # (lat, lon): between place Saint-Jacques and place Saint-Louis
STREET_WIDTH_M = 12.0  # between the façades

XY = tuple[float, float]


@dataclass(frozen=True)
class Route:
    """Vertices `start` to `stop` (exclusive, Python slice) of a demo route."""

    name: str
    start: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class Street:
    """A named street: its centre line, and the width kept free of buildings."""

    name: str
    line: tuple[XY | Route, ...]
    width: float = STREET_WIDTH_M


@dataclass(frozen=True)
class Square:
    """A named open space; exported as its outline (and a `spine` for addresses inside)."""

    name: str
    outline: tuple[XY | Route, ...]
    spine: tuple[XY | Route, ...] = ()
    margin: float = 0.0  # open ground beyond the outline (a route walking round the edge)


@dataclass(frozen=True)
class Landmark:
    """A named building, a rectangle (or a Latin cross with `arms`), rotated to `bearing`."""

    name: str
    centre: XY
    length: float  # along `bearing`
    depth: float
    bearing: float  # compass degrees of the long axis
    clearance: float = 2.0  # open ground kept around it
    arms: tuple[float, float, float] | None = None  # transept: offset along, span, width


@dataclass(frozen=True)
class Kerb:
    """A point `inset` metres in front of a façade, where a camera hangs.

    On a street: `at` metres along its centre line (negative: from its end), on the `side`
    seen when walking it in drawing order. On a square: `at` metres along its edge,
    anticlockwise from the corner nearest the first point of its outline (`side` does not
    apply).
    """

    street: str
    at: float
    side: str = "left"  # or "right"
    inset: float = 1.0


@dataclass(frozen=True)
class Facade:
    """A privacy mask: `length` metres of a façade and `depth` metres in front of it."""

    street: str
    at: float
    side: str = "left"
    length: float = 6.0
    depth: float = 2.0


@dataclass(frozen=True)
class Along:
    """A point on a street's centre line, `at` metres from its start (negative: its end)."""

    street: str
    at: float


Anchor = XY | Kerb | Along


@dataclass(frozen=True)
class Cam:
    """A camera: where it hangs and what it looks at; the rest are registry properties."""

    name: str
    kind: str  # fixed, ptz, dome
    at: Anchor
    look: Anchor | float  # a point to aim at, or a compass heading
    range_m: float
    height_m: float
    fov_deg: float = 0.0  # 0: the kind's default
    pan: tuple[float, float] = (0.0, 360.0)
    masks: tuple[Facade, ...] = ()


# Where buildings may stand: the east bank up to the quay along the Moselle's arm, and the
# south of the island of the Petit-Saulcy (its north, round the Temple Neuf, is the Jardin
# d'Amour). What lies outside is water, the Esplanade and gardens: left blank.
# fmt: off
LAND = (
    (
        (-160, 470), (-167, 330), (-182, 240), (-204, 150), (-229, 40), (-252, -100),
        (-262, -160), (-262, -440), (430, -440), (430, 470),
    ),
    (
        (-420, 135), (-350, 100), (-250, 110), (-218, 200), (-207, 300), (-204, 360),
        (-330, 402), (-350, 418), (-418, 395), (-430, 260),
    ),
)
# fmt: on

STREETS = (
    Street("Rue Dupont-des-Loges", (Route("metz-mandela", 0, 4), (-42, 124))),
    Street("En Fournirue", (Route("metz-mandela", 5), (268, 309), (300, 322))),
    Street("Moyen Pont", (Route("metz-comedie", 0, 3),), width=14),
    Street("Rue des Jardins", ((55, 140), (125, 163), (195, 190), (270, 222), (311, 244))),
    Street("Rue Taison", ((176, 350), (182, 267), (192, 189))),
    Street("Rue du Change", ((120, 163), (145, 70), (165, -18))),
    Street("Rue Fabert", ((-54, 40), (-48, 85), (-42, 120))),
    Street("Rue Serpenoise", ((-160, -300), (-148, -222), (-144, -140), (-138, -56), (-110, 0))),
    Street("Rue des Clercs", ((-70, -8), (-80, -120), (-105, -230), (-125, -300))),
    Street("Rue Ladoucette", ((-52, 25), (40, 55), (145, 70))),
    Street("Rue de la Tête-d'Or", ((-58, -10), (20, -55), (90, -95), (128, -110))),
    Street("Rue du Grand-Cerf", ((145, 70), (240, 90), (336, 100))),
    Street("Rue du Coëtlosquet", ((172, -30), (260, -20), (341, -5))),
    Street(
        "Rue des Allemands",
        ((300, 322), (318, 200), (335, 60), (342, -5), (350, -120), (352, -200), (346, -267)),
    ),
    Street("Rue Mazelle", ((128, -155), (190, -200), (240, -238), (262, -250))),
    Street("Rue Pierre-Hardie", ((124, -160), (110, -240), (95, -312))),
    Street("Rue de la Chèvre", ((229, -289), (150, -300), (95, -312), (40, -322))),
    Street("Rue des Parmentiers", ((40, -322), (-40, -332), (-118, -340))),
    Street("Rue aux Ours", ((-97, -185), (0, -192), (112, -230))),
    Street("Rue Haute-Seille", ((357, -311), (430, -325))),
    Street("Rue du Champé", ((300, -352), (292, -440))),
    Street("Rue Winston-Churchill", ((-146, -140), (-200, -150), (-262, -160))),
    Street("Rue Ambroise-Thomas", ((-200, 12), (-206, -60), (-205, -148))),
    Street("Rue du Palais", ((-188, 50), (-172, 140), (-150, 210))),
    Street("Rue d'Estrées", ((-80, 322), (20, 326), (120, 336), (176, 350), (300, 322))),
    Street("Rue des Trinitaires", ((-150, 420), (100, 425), (176, 350))),
    Street(
        "Quai Félix-Maréchal",
        ((-252, -100), (-229, 40), (-204, 150), (-182, 240), (-167, 330), (-160, 470)),
    ),
    # the island
    Street("Rue Saint-Marcel", ((-285, 335), (-320, 260), (-345, 160), (-350, 110))),
    Street("Quai Paul-Wiltzer", ((-350, 418), (-418, 395), (-430, 260), (-420, 135))),
    Street("Allée du Jardin-d'Amour", (Route("metz-comedie", 5),), width=8),
)

SQUARES = (
    Square(
        "Place Nelson-Mandela",
        ((-224, 8), (-178, 6), (-172, 44), (-214, 54)),
        ((-210, 28), Route("metz-mandela", 0, 1)),
    ),
    Square(
        "Place d'Armes",
        ((-45, 110), (55, 132), (70, 206), (25, 250), (-60, 220)),
        (Route("metz-mandela", 3, 6), (70, 206)),
    ),
    Square(
        "Place de Chambre",
        ((-150, 215), (-100, 200), (-85, 230), (-70, 262), (-78, 322), (-112, 332), (-160, 318)),
        ((-125, 225), (-95, 311)),
    ),
    Square(
        "Place Jean-Paul-II",
        ((-85, 250), (0, 262), (30, 285), (28, 318), (-76, 316)),
    ),
    Square(
        "Place Saint-Jacques",
        ((-112, -6), (-58, -14), (-48, 40), (-98, 52)),
    ),
    Square(
        "Place Saint-Louis",
        ((108, -160), (142, -168), (182, -18), (150, -10)),
        ((130, -158), (165, -18)),
    ),
    Square(
        "Place de la République",
        ((-252, -300), (-118, -300), (-112, -392), (-252, -402)),
    ),
    Square("Place des Charrons", (Route("metz-charrons"),), margin=STREET_WIDTH_M / 2),
    Square(
        "Place de la Comédie",
        ((-206, 356), (-276, 362), (-330, 402), (-352, 426), (-300, 440), (-240, 412)),
        (Route("metz-comedie", 2, 6),),
    ),
    Square(
        "Place de la Préfecture",
        ((-208, 304), (-262, 300), (-286, 335), (-276, 362), (-206, 358)),
    ),
)

LANDMARKS = (
    Landmark("Cathédrale Saint-Étienne", (-40, 240), 112, 30, 70, clearance=6, arms=(14, 58, 20)),
    Landmark("Hôtel de ville", (8, 111), 74, 24, 77),
    Landmark("Marché couvert", (58, 282), 52, 34, 70, clearance=4),
    Landmark("Opéra-Théâtre", (-312, 370), 56, 34, 300, clearance=3),
    Landmark("Temple Neuf", (-306, 466), 44, 22, 40, clearance=4),
    Landmark("Hôtel de la Préfecture", (-248, 272), 58, 38, 85),
    Landmark("Église Saint-Eucaire", (330, -400), 36, 16, 80),
)

# The network of the CSU (centre de supervision urbain). Most cameras watch the routes the
# demo officers walk; the others fill in the rest of the centre. `look` is where a fixed
# camera points, and a PTZ camera's home position.
DDL, FOURNIRUE, CHARRONS = "Rue Dupont-des-Loges", "En Fournirue", "Place des Charrons"
# fmt: off
CAMERAS = (
    # place Nelson-Mandela, rue Dupont-des-Loges, place d'Armes, En Fournirue
    Cam("Place Nelson-Mandela – mât central", "dome", (-199, 29), 60, range_m=35, height_m=6),
    Cam("Rue Dupont-des-Loges – angle place Nelson-Mandela", "fixed",
        Kerb(DDL, 30, "right"), Along(DDL, 110), range_m=80, height_m=6, fov_deg=60),
    Cam("Rue Dupont-des-Loges – n° 14", "ptz",
        Kerb(DDL, 95, "left"), Along(DDL, 20), range_m=150, height_m=8, pan=(55, 240)),
    Cam("Rue Dupont-des-Loges – angle rue Fabert", "fixed",
        Kerb(DDL, -10, "left"), Along(DDL, 90), range_m=80, height_m=6, fov_deg=60),
    Cam("Place d'Armes – angle rue Fabert", "fixed",
        (-38, 126), (62, 198), range_m=80, height_m=7, fov_deg=80),
    Cam("Place d'Armes – façade de l'Hôtel de ville", "dome", (5, 124), 0, range_m=40, height_m=8),
    Cam("Place d'Armes – parvis de la cathédrale", "ptz",
        (4, 211), (50, 188), range_m=180, height_m=10),
    Cam("En Fournirue – débouché place d'Armes", "fixed",
        Kerb(FOURNIRUE, 55, "left"), Along(FOURNIRUE, 150), range_m=80, height_m=6, fov_deg=60),
    Cam("En Fournirue – angle rue Taison", "dome",
        Kerb(FOURNIRUE, 183, "right"), 60, range_m=40, height_m=5),
    Cam("En Fournirue – angle rue des Allemands", "fixed",
        Kerb(FOURNIRUE, -6, "left"), Along(FOURNIRUE, 180), range_m=80, height_m=6, fov_deg=60),

    # place de Chambre, Moyen Pont, place de la Comédie, Temple Neuf
    Cam("Place de Chambre – mât", "dome", (-101, 304), 300, range_m=40, height_m=6,
        masks=(Facade("Place de Chambre", 172, length=8),)),  # windows of flats
    Cam("Moyen Pont – côté place de Chambre", "fixed",
        Kerb("Moyen Pont", 22, "left"), Along("Moyen Pont", 116), range_m=80, height_m=6,
        fov_deg=50),
    Cam("Place de la Comédie – débouché du Moyen Pont", "fixed",
        (-208, 362), (-313, 417), range_m=80, height_m=6, fov_deg=60),
    # on the Opéra's façade: it can turn towards the square only
    Cam("Opéra-Théâtre – façade sur la place de la Comédie", "ptz",
        (-303, 387), 350, range_m=150, height_m=10, pan=(300, 120)),
    Cam("Temple Neuf – parvis", "dome", (-334, 440), 330, range_m=35, height_m=5),
    Cam("Jardin d'Amour – chevet du Temple Neuf", "fixed",
        (-279, 494), (-357, 478), range_m=80, height_m=5),
    Cam("Place de la Préfecture – Moyen Pont", "ptz",
        (-240, 342), (-200, 366), range_m=150, height_m=9),

    # place des Charrons
    Cam("Place des Charrons – mât central", "ptz",
        (293, -298), (250, -250), range_m=150, height_m=10),
    Cam("Place des Charrons – angle rue Mazelle", "fixed",
        (258, -246), (346, -267), range_m=80, height_m=6, fov_deg=90),
    Cam("Place des Charrons – angle rue Haute-Seille", "fixed",
        (361, -309), (280, -356), range_m=80, height_m=6, fov_deg=90),
    Cam("Place des Charrons – angle rue du Champé", "fixed",
        (286, -360), (229, -289), range_m=80, height_m=6, fov_deg=90),
    Cam("Place des Charrons – côté école", "dome", Kerb(CHARRONS, 75), 0, range_m=40, height_m=5,
        masks=(Facade(CHARRONS, 110, length=6),)),  # the school's entrance
    Cam("Place des Charrons – angle rue des Allemands", "dome",
        (349, -262), 0, range_m=40, height_m=6),
    Cam("Rue Mazelle – vers place des Charrons", "fixed",
        Kerb("Rue Mazelle", 95, "left"), (262, -250), range_m=80, height_m=6, fov_deg=60),

    # the rest of the centre
    Cam("Place Saint-Louis – mât", "ptz", (145, -89), 15, range_m=180, height_m=10),
    Cam("Place Saint-Louis – arcades", "dome",
        Kerb("Place Saint-Louis", 74), 0, range_m=35, height_m=5,
        masks=(Facade("Place Saint-Louis", 92, length=8),)),  # windows over the arcades
    Cam("Place Saint-Louis – angle rue du Change", "fixed",
        (165, -22), (125, -160), range_m=80, height_m=7, fov_deg=60),
    Cam("Rue Serpenoise – angle place de la République", "fixed",
        Kerb("Rue Serpenoise", 8, "right"), Along("Rue Serpenoise", 90), range_m=80,
        height_m=6, fov_deg=60,
        masks=(Facade("Rue Serpenoise", 48, "left", length=5),)),  # a courtyard's gateway
    Cam("Rue Serpenoise – angle rue Winston-Churchill", "ptz",
        Kerb("Rue Serpenoise", 168, "left"), Along("Rue Serpenoise", 300), range_m=150,
        height_m=8),
    Cam("Place de la République – mât", "ptz", (-185, -350), 0, range_m=200, height_m=12),
    Cam("Place de la République – angle rue des Clercs", "dome",
        (-122, -305), 0, range_m=40, height_m=6),
    Cam("Place Saint-Jacques – mât", "dome", (-80, 20), 0, range_m=40, height_m=6),
    Cam("Rue des Clercs – place Saint-Jacques", "fixed",
        Kerb("Rue des Clercs", 12, "left"), Along("Rue des Clercs", 100), range_m=80, height_m=6),
    Cam("Rue des Allemands – angle rue du Coëtlosquet", "fixed",
        Kerb("Rue des Allemands", 335, "right"), Along("Rue des Allemands", 260), range_m=70,
        height_m=6),
    Cam("Rue des Jardins – angle rue Taison", "dome",
        Kerb("Rue des Jardins", 145, "left"), 0, range_m=30, height_m=5),
    Cam("Place Jean-Paul-II – Marché couvert", "ptz", (-20, 302), 90, range_m=150, height_m=10),
    Cam("Rue Ladoucette – angle rue du Change", "fixed",
        Kerb("Rue Ladoucette", -12, "right"), Along("Rue Ladoucette", 100), range_m=70,
        height_m=6),
    Cam("Rue Taison – angle rue d'Estrées", "dome",
        Kerb("Rue Taison", 10, "left"), 0, range_m=30, height_m=5),
    Cam("Rue Winston-Churchill – Esplanade", "fixed",
        Kerb("Rue Winston-Churchill", -10, "left"), Along("Rue Winston-Churchill", 20),
        range_m=70, height_m=6),
    Cam("Quai Félix-Maréchal – Moyen Pont", "fixed",
        Kerb("Quai Félix-Maréchal", 470, "right"), Along("Quai Félix-Maréchal", 400),
        range_m=70, height_m=6),
)
# fmt: on
