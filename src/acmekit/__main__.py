from acmekit.cli.main import main

main()
