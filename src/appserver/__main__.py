from appserver.cli import main

main()
