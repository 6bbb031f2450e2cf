print("skywire")
