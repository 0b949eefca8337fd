from netpersona.cli.main import main

main()
