from cb_assets.cli import main

main()
